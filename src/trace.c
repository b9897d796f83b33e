/* SPDX-License-Identifier: MIT */
/* trace.c -- W3C Trace Context: the traceparent header, parsed, and made
 * for outgoing requests */
#include "trace.h"

#include <stdio.h>
#include <string.h>

#include "reqid.h"

/* The length of a version 00 traceparent. */
#define TRACEPARENT_LEN 55

/* n lowercase hex digits at s, and not all of them '0' when nonzero. */
static int
is_hex(const char *s, size_t n, int nonzero)
{
	int any = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
		any |= c != '0';
	}
	return !nonzero || any;
}

int
trace_parse(const char *v, struct trace *out)
{
	size_t len = v != NULL ? strlen(v) : 0;

	memset(out, 0, sizeof(*out));
	/* Spaces and tabs around a field value are not part of it. */
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	if (len < TRACEPARENT_LEN || !is_hex(v, 2, 0) || v[2] != '-' ||
	    v[35] != '-' || v[52] != '-')
		return -1;
	if (strncmp(v, "ff", 2) == 0)
		return -1; /* the version that is forbidden */
	if (strncmp(v, "00", 2) == 0
	        ? len != TRACEPARENT_LEN
	        : len > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != '-')
		return -1;
	if (!is_hex(v + 3, 32, 1) || !is_hex(v + 36, 16, 1) ||
	    !is_hex(v + 53, 2, 0))
		return -1;
	memcpy(out->trace_id, v + 3, 32);
	memcpy(out->span_id, v + 36, 16);
	memcpy(out->flags, v + 53, 2);
	return 0;
}

/* n random lowercase hex digits into out (n <= 32), not all '0'. */
static void
random_hex(char *out, size_t n)
{
	char r[33];

	do
		reqid_new(r); /* 128 random bits as 32 hex digits */
	while (!is_hex(r, n, 1));
	memcpy(out, r, n);
	out[n] = '\0';
}

void
trace_outbound(const struct trace *parent, char *out)
{
	char trace_id[33], span_id[17];
	int have = parent != NULL && parent->trace_id[0] != '\0';
	const char *flags = have ? parent->flags : "00";

	if (have)
		memcpy(trace_id, parent->trace_id, sizeof(trace_id));
	else
		random_hex(trace_id, 32);
	if (have && parent->self_id[0] != '\0') { /* microd's span */
		memcpy(span_id, parent->self_id, sizeof(span_id));
		flags = parent->self_flags;
	} else {
		random_hex(span_id, 16);
	}
	/* Only the sampled bit is defined in version 00: the others go out
	 * as zero, whatever came. */
	snprintf(out, TRACE_HEADER_LEN + 1, "00-%s-%s-0%c", trace_id, span_id,
	         flags[1] != '\0' && strchr("13579bdf", flags[1]) != NULL
	             ? '1'
	             : '0');
}
