/* SPDX-License-Identifier: MIT */
/* number.h -- the one parser of decimal integers, sizes and seconds */
#ifndef MICROD_NUMBER_H
#define MICROD_NUMBER_H

#include <stdint.h>

/*
 * Parses s as plain decimal digits, nothing else: no sign, no space, no
 * base prefix, not empty. Returns 0 with *out set when s is such a number
 * no larger than max, else -1 (also for NULL).
 */
int number_parse(const char *s, uintmax_t max, uintmax_t *out);

/*
 * A byte count with an optional k, m or g suffix (any case; powers of 1024),
 * in [min, max]: "4096", "64k", "1G". 0 with *out set, or -1.
 */
int number_parse_size(const char *s, uintmax_t min, uintmax_t max,
                      uintmax_t *out);

/*
 * Seconds with up to three decimals ("10", "0.5", "2.25"), at most max_s, as
 * milliseconds. 0 with *out set, or -1.
 */
int number_parse_seconds(const char *s, unsigned int max_s, unsigned int *out);

#endif
