/* SPDX-License-Identifier: MIT */
/* number.c -- the one parser of decimal integers, sizes and seconds */
#include "number.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int
number_parse(const char *s, uintmax_t max, uintmax_t *out)
{
	char *end;
	uintmax_t v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1; /* rejects "", "-1", " 1" and "+1" */
	errno = 0;
	v = strtoumax(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

int
number_parse_size(const char *s, uintmax_t min, uintmax_t max, uintmax_t *out)
{
	char digits[32];
	size_t n = strlen(s), shift = 0;
	uintmax_t v;

	if (n == 0 || n >= sizeof(digits))
		return -1;
	switch (s[n - 1]) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		break;
	}
	memcpy(digits, s, n + 1);
	if (shift != 0)
		digits[n - 1] = '\0';
	if (number_parse(digits, max >> shift, &v) != 0 || (v << shift) < min)
		return -1;
	*out = v << shift;
	return 0;
}

int
number_parse_seconds(const char *s, unsigned int max_s, unsigned int *out)
{
	char whole[16];
	const char *dot = strchr(s, '.');
	size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);
	uintmax_t secs, frac = 0;
	int places = 0;

	if (n == 0 || n >= sizeof(whole))
		return -1;
	memcpy(whole, s, n);
	whole[n] = '\0';
	if (number_parse(whole, max_s, &secs) != 0)
		return -1;
	if (dot != NULL) {
		for (const char *p = dot + 1; *p != '\0'; p++, places++) {
			if (*p < '0' || *p > '9' || places == 3)
				return -1;
			frac = frac * 10 + (uintmax_t)(*p - '0');
		}
		if (places == 0)
			return -1;
		for (; places < 3; places++)
			frac *= 10;
	}
	if (secs == max_s && frac != 0)
		return -1;
	*out = (unsigned int)(secs * 1000 + frac);
	return 0;
}
