/* SPDX-License-Identifier: MIT */
/*
 * export.h -- finished spans to an OTLP/HTTP receiver as JSON: a bounded
 * queue, batches on a thread of their own, retries
 */
#ifndef MICROD_EXPORT_H
#define MICROD_EXPORT_H

#include <stddef.h>

#include "otelconf.h"

/* OTLP's SpanKind values. */
#define SPAN_KIND_SERVER 2
#define SPAN_KIND_CLIENT 3

/* Most attributes one span carries. */
#define SPAN_ATTRS 8

/* One finished span: one allocation (text holds its strings). */
struct span {
	char trace_id[33], span_id[17];
	char parent_id[17]; /* "": a root span */
	int kind;           /* SPAN_KIND_... */
	int error;          /* status Error; else the status is left unset */
	long long start_unix_ns, end_unix_ns;
	const char *name; /* into text */
	size_t n_attrs;
	struct span_attr {
		const char *key; /* a string constant */
		const char *str; /* into text; NULL: num is the value */
		long long num;
	} attrs[SPAN_ATTRS];
	char text[];
};

struct export;

/*
 * Starts the exporter's thread for c (enabled). NULL with why when the
 * thread or the queue cannot be had.
 */
struct export *export_start(const struct otelconf *c, char *why, size_t len);

/*
 * Queues s, which is the exporter's from then on: freed at once and counted
 * as dropped (microd_otel_spans_dropped_total) when the queue holds
 * max_queue spans already, or the exporter has stopped. Never waits for
 * the exporter: a lock held for a few pointer moves at most.
 */
void export_push(struct export *e, struct span *s);

/*
 * Stops taking spans, sends what is queued within the export timeout
 * (OTEL_BSP_EXPORT_TIMEOUT), then ends the thread and frees e. NULL-safe.
 */
void export_stop(struct export *e);

/*
 * The OTLP/HTTP JSON body of an ExportTraceServiceRequest for spans[0..n)
 * with c's resource: ids as lowercase hex, times as decimal strings of
 * Unix nanoseconds, as the OTLP JSON mapping says. A malloc'd string with
 * *len, or NULL.
 */
char *export_encode(const struct otelconf *c, struct span *const *spans,
                    size_t n, size_t *len);

/* What an answer's status means for a batch. */
enum export_verdict {
	EXPORT_DONE,  /* 2xx: sent */
	EXPORT_RETRY, /* 429, 502, 503, 504, or no answer: try again */
	EXPORT_DROP,  /* anything else (a 400 too): never sent again */
};
enum export_verdict export_verdict(int status);

/*
 * How long to wait before try number attempt + 1 (attempt from 1):
 * exponential backoff from 1 s, doubled each try up to 32 s, with full
 * jitter drawn from r (any 32-bit value): a delay in [base/2, base); or
 * the receiver's Retry-After (retry_after_ms >= 0: given) when longer.
 */
long long export_backoff_ms(unsigned int attempt, long long retry_after_ms,
                            unsigned int r);

#endif
