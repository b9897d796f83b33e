/* SPDX-License-Identifier: MIT */
/* reqid.h -- request ids: accept a client's, or make one */
#ifndef MICROD_REQID_H
#define MICROD_REQID_H

#include <stddef.h>
#include <stdint.h>

/* The longest id accepted from a client. */
#define REQID_MAX 128

/* 1 when id is 1-128 characters of [A-Za-z0-9._:-], else 0. */
int reqid_valid(const char *id);

/* Writes 128 random bits as 32 hex digits and a NUL (33 bytes). */
void reqid_new(char *out);

/* 64 bits from the same per-thread generator: fast, not secret (the
 * TechEmpower routes draw their row ids and numbers from it). */
uint64_t reqid_random(void);

#endif
