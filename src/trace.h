/* SPDX-License-Identifier: MIT */
/* trace.h -- W3C Trace Context: the traceparent header, parsed */
#ifndef MICROD_TRACE_H
#define MICROD_TRACE_H

/*
 * A valid traceparent's fields, as lowercase hex strings. With traces on
 * (src/otel.h), also this request's own span: its id and its flags; a
 * request that came without a traceparent then has a new trace_id and an
 * empty span_id.
 */
struct trace {
	char trace_id[33];
	char span_id[17]; /* the caller's parent-id; "": none came */
	char flags[3];
	char self_id[17];   /* this request's span; "": traces are off */
	char self_flags[3]; /* its flags: "01" when it is recorded */
};

/*
 * Parses a traceparent value as Trace Context Level 1 says (spaces and tabs
 * around it dropped, as around any field value): version 00 is
 * exactly "00-" 32 hex "-" 16 hex "-" 2 hex, lowercase; a later version
 * has at least those 55 characters, and a '-' after them if more follow;
 * version ff, an all-zero trace-id or parent-id, or any other byte makes
 * the whole header invalid. 0 with out filled, or -1 (out zeroed). NULL is
 * invalid.
 */
int trace_parse(const char *value, struct trace *out);

/* The length of a version 00 traceparent, without its NUL. */
#define TRACE_HEADER_LEN 55

/*
 * The traceparent for a request microd (or a handler) makes: with a parent
 * (the incoming request's), its trace-id and flags and a new parent-id,
 * the outgoing request's own; with parent NULL or holding none, a new
 * trace-id too, and flags 00. Of the flags only the sampled bit is passed
 * on (version 00 defines no other). When microd makes a span for the
 * request (parent->self_id set), its parent-id is that span's id and its
 * flags that span's. out gets TRACE_HEADER_LEN + 1 bytes. The ids are
 * random, never all zero.
 */
void trace_outbound(const struct trace *parent, char *out);

#endif
