/* SPDX-License-Identifier: MIT */
/* encode.c -- compact JSON text from a jansson value */
#include "encode.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

/*
 * Why not json_dumpb(): before it writes an object or an array it prints the
 * container's address with snprintf() and adds it to a hashtable, to catch
 * reference loops: two allocations and a formatted print per container,
 * which cost more than the writing itself (callgrind: json_dumpb() ~142k
 * instructions for the 1 KiB /echo reply, ~2.9k for {"status":"ok"}; this
 * writer takes ~109k fewer and 0.55k). Reply bodies are trees a handler
 * built for this request, so a depth bound is guard enough. The text is
 * json_dumpb()'s own; tests/unit.c and the json fuzz target compare the two.
 */

struct out {
	char *buf;
	size_t cap, len; /* len counts what would be written, past cap too */
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (o->len < o->cap) {
		size_t room = o->cap - o->len;

		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

static void
put_char(struct out *o, char c)
{
	if (o->len < o->cap)
		o->buf[o->len] = c;
	o->len++;
}

/* As jansson: the two-character escapes, \u00XX for other controls. A
 * byte that is not UTF-8 fails it, or with lossy is written as U+FFFD. */
static int
put_string(struct out *o, const char *s, size_t n, int lossy)
{
	static const char hex[] = "0123456789ABCDEF";
	static const char plain[] = "\"\\\b\f\n\r\t", named[] = "\"\\bfnrt";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0, len;

	put_char(o, '"');
	while (i < n) {
		unsigned char c = p[i];

		if (c >= 0x20 && c != '"' && c != '\\') {
			/* A run of bytes written as they are; UTF-8 checked. */
			len = c < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
			if (len == 0 && !lossy)
				return -1;
			if (len == 0) {
				put(o, (const char *)p + i - run, run);
				put(o, "\\ufffd", 6);
				run = 0;
				i++;
				continue;
			}
			i += len;
			run += len;
			continue;
		}
		put(o, (const char *)p + i - run, run);
		run = 0;
		char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
		const char *hit = c != '\0' ? strchr(plain, c) : NULL;

		if (hit != NULL)
			esc[1] = named[hit - plain];
		put(o, esc, hit != NULL ? 2 : 6);
		i++;
	}
	put(o, (const char *)p + i - run, run);
	put_char(o, '"');
	return 0;
}

static void
put_integer(struct out *o, json_int_t v)
{
	char digits[24];
	size_t at = sizeof(digits);
	/* Through unsigned, so the most negative value has a magnitude too. */
	unsigned long long mag =
	    v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		digits[--at] = (char)('0' + mag % 10);
		mag /= 10;
	} while (mag != 0);
	if (v < 0)
		digits[--at] = '-';
	put(o, digits + at, sizeof(digits) - at);
}

/*
 * jansson's way: %.17g, ".0" when that reads as an integer, and the
 * exponent without its '+' and leading zeros (1e+300 -> 1e300, 1e-05 ->
 * 1e-5). microd never calls setlocale(), so the decimal point is '.'.
 */
static int
put_real(struct out *o, double v)
{
	char text[40], *e, *from, *to;
	int n = snprintf(text, sizeof(text), "%.17g", v);
	size_t len;

	if (n < 0 || (size_t)n >= sizeof(text) - 2)
		return -1;
	len = (size_t)n;
	if (strchr(text, '.') == NULL && strchr(text, 'e') == NULL) {
		memcpy(text + len, ".0", 3);
		len += 2;
	}
	e = strchr(text, 'e');
	if (e != NULL) {
		to = e + 1;
		from = to + 1;
		if (*to == '-')
			to++;
		while (*from == '0')
			from++;
		if (from != to) {
			memmove(to, from, len + 1 - (size_t)(from - text));
			len -= (size_t)(from - to);
		}
	}
	put(o, text, len);
	return 0;
}

static int
put_value(struct out *o, json_t *v, unsigned int depth)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (depth >= ENCODE_MAX_DEPTH)
			return -1;
		put_char(o, '{');
		for (void *first = json_object_iter(v), *it = first; it != NULL;
		     it = json_object_iter_next(v, it)) {
			if (it != first)
				put_char(o, ',');
			if (put_string(o, json_object_iter_key(it),
			               json_object_iter_key_len(it), 0) != 0)
				return -1;
			put_char(o, ':');
			if (put_value(o, json_object_iter_value(it),
			              depth + 1) != 0)
				return -1;
		}
		put_char(o, '}');
		return 0;
	case JSON_ARRAY:
		if (depth >= ENCODE_MAX_DEPTH)
			return -1;
		put_char(o, '[');
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (i > 0)
				put_char(o, ',');
			if (put_value(o, json_array_get(v, i), depth + 1) != 0)
				return -1;
		}
		put_char(o, ']');
		return 0;
	case JSON_STRING:
		return put_string(o, json_string_value(v),
		                  json_string_length(v), 0);
	case JSON_INTEGER:
		put_integer(o, json_integer_value(v));
		return 0;
	case JSON_REAL:
		return put_real(o, json_real_value(v));
	case JSON_TRUE:
		put(o, "true", 4);
		return 0;
	case JSON_FALSE:
		put(o, "false", 5);
		return 0;
	case JSON_NULL:
		put(o, "null", 4);
		return 0;
	}
	return -1;
}

size_t
encode_json(json_t *v, char *buf, size_t cap)
{
	struct out o = {.buf = buf, .cap = cap, .len = 0};

	if (v == NULL || put_value(&o, v, 0) != 0)
		return 0;
	return o.len;
}

size_t
encode_json_text(const char *s, char *buf, size_t cap)
{
	struct out o = {.buf = buf, .cap = cap, .len = 0};

	(void)put_string(&o, s, strlen(s), 1); /* lossy: cannot fail */
	return o.len;
}

size_t
encode_json_integer(long long v, char *buf, size_t cap)
{
	struct out o = {.buf = buf, .cap = cap, .len = 0};

	put_integer(&o, (json_int_t)v);
	return o.len;
}
