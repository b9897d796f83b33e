/* SPDX-License-Identifier: MIT */
/* utf8.h -- UTF-8 validation for client-supplied strings */
#ifndef MICROD_UTF8_H
#define MICROD_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

/*
 * Copies src into dst (cap bytes, NUL-terminated), replacing each invalid
 * byte by U+FFFD, so the result is valid UTF-8 that jansson accepts.
 */
void utf8_sanitize(char *dst, size_t cap, const char *src);

#endif
