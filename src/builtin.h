/* SPDX-License-Identifier: MIT */
/* builtin.h -- microd's own route rows: probes, /version, /metrics */
#ifndef MICROD_BUILTIN_H
#define MICROD_BUILTIN_H

#include <stddef.h>

#include "router.h"

extern const struct route builtin_routes[];
extern const size_t builtin_routes_count;

#endif
