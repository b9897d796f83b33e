/* SPDX-License-Identifier: MIT */
/*
 * otel.h -- OpenTelemetry traces: the sampler, a SERVER span per request
 * and a CLIENT span per database statement, handed to the exporter
 */
#ifndef MICROD_OTEL_H
#define MICROD_OTEL_H

#include "otelconf.h"
#include "trace.h"

struct otel;
struct request;

/*
 * Starts exporting as c says (c->enabled), or NULL: off, or the exporter
 * could not start (why filled then; why[0] is '\0' when c is off).
 */
struct otel *otel_open(const struct otelconf *c, char *why, size_t len);

/* Sends what is queued within the export timeout, then frees o.
 * NULL-safe. No span may be made during or after it. */
void otel_close(struct otel *o);

/*
 * The sampler's verdict for a span of trace trace_id (32 hex digits) under
 * parent (NULL: a root span; else its flags' sampled bit counts for the
 * parentbased_ samplers): 1 to record it. traceidratio compares the trace
 * id's last 16 hex digits with ratio * 2^64, so every service that uses
 * the same ratio keeps the same traces. Pure.
 */
int otel_sample(enum otelconf_sampler s, double ratio, const char *parent_flags,
                const char *trace_id);

/*
 * A request begins with t as trace_parse left it (trace_id "" when no valid
 * traceparent came): with o, t gets this request's span id and its flags
 * (self_id, self_flags), and without a parent a new trace_id and flags too.
 * 1 when the span is to be recorded (otel_server_end then), else 0. NULL
 * o: 0 with t untouched.
 */
int otel_server_begin(const struct otel *o, struct trace *t);

/* What the engine knows of a request when it ends. */
struct otel_server_info {
	const char *method;
	const char *route;      /* the route's template; NULL: none matched */
	const char *path;       /* as sent, without the query */
	unsigned int status;    /* the answer's status */
	const char *peer;       /* the client's address; NULL or "": unknown */
	const char *user_agent; /* NULL: none came */
	long long start_ns, end_ns; /* now_ns() (src/clock.h) */
};

/*
 * The SERVER span of a request that otel_server_begin said to record: named
 * "METHOD /route/{template}" ("METHOD" when no route matched), with the HTTP
 * semantic-convention attributes; status Error for a 5xx only. Queued for
 * export; never waits.
 */
void otel_server_end(struct otel *o, const struct trace *t,
                     const struct otel_server_info *i);

/*
 * For the database layer (src/db/): one CLIENT span for a statement that
 * req's handler ran, called once per statement after it finished, on the
 * thread that ran it. statement is the statement's name in the statement
 * table (db.operation.name; the span's name too); start_ns and end_ns are
 * now_ns() (src/clock.h) when it was sent and when its result (or error)
 * came; sqlstate is the five-character SQLSTATE of an error (the span's
 * db.response.status_code and status Error), NULL when it succeeded.
 * db.system.name is "postgresql". Its parent is req's SERVER span. Nothing
 * happens when traces are off, or req's span is not recorded, or req is
 * NULL. Never waits: a full queue drops the span.
 */
void otel_client_span(const struct request *req, const char *statement,
                      long long start_ns, long long end_ns,
                      const char *sqlstate);

#endif
