/* SPDX-License-Identifier: MIT */
/* encode.h -- compact JSON text from a jansson value, or a C string */
#ifndef MICROD_ENCODE_H
#define MICROD_ENCODE_H

#include <jansson.h>
#include <stddef.h>

/* Deeper values are refused: a tree built per request is never this deep. */
#define ENCODE_MAX_DEPTH 4096

/*
 * Writes v as json_dumpb(v, buf, cap, JSON_COMPACT | JSON_ENCODE_ANY) would,
 * byte for byte, and returns the same: the length of the whole text, of
 * which only the first cap bytes are written, or 0 when v cannot be written
 * (a string that is not UTF-8, nesting beyond ENCODE_MAX_DEPTH). v is not
 * changed; it is not const only because jansson's object iterators are not.
 */
size_t encode_json(json_t *v, char *buf, size_t cap);

/*
 * Writes the C string s as one JSON string, quotes included, escaped as
 * encode_json escapes, each byte that is not UTF-8 written as U+FFFD
 * (\ufffd), so any bytes make valid JSON. Returns the whole length, of
 * which only the first cap bytes are written (as snprintf, without a NUL).
 */
size_t encode_json_text(const char *s, char *buf, size_t cap);

/* v in decimal as encode_json writes an integer; the same return. */
size_t encode_json_integer(long long v, char *buf, size_t cap);

#endif
