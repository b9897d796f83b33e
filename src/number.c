/* SPDX-License-Identifier: MIT */
/* number.c -- the one parser of unsigned decimal integers */
#include "number.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

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
