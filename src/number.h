/* SPDX-License-Identifier: MIT */
/* number.h -- the one parser of unsigned decimal integers */
#ifndef MICROD_NUMBER_H
#define MICROD_NUMBER_H

#include <stdint.h>

/*
 * Parses s as plain decimal digits, nothing else: no sign, no space, no
 * base prefix, not empty. Returns 0 with *out set when s is such a number
 * no larger than max, else -1 (also for NULL).
 */
int number_parse(const char *s, uintmax_t max, uintmax_t *out);

#endif
