/* SPDX-License-Identifier: MIT */
/* request.h -- what a handler sees and what it returns; no libmicrohttpd */
#ifndef MICROD_REQUEST_H
#define MICROD_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <string.h>

#include "runtime.h"
#include "trace.h"

enum request_field { REQUEST_HEADER, REQUEST_QUERY, REQUEST_PEER };

/* Most {name} segments one route may have. */
#define REQUEST_PARAMS_MAX 8

/* The path parameters of the route that matched, decoded. */
struct request_params {
	size_t n;
	struct request_param {
		const char *name; /* into the route's template: not ended */
		size_t name_len;
		const char *value; /* percent-decoded, NUL-terminated */
	} at[REQUEST_PARAMS_MAX];
};

/*
 * The application's own context, set up once by app_start (src/app/app.h) and
 * handed to every handler. Handlers run on many threads at once: what they
 * change in it must be atomic or locked.
 */
struct app;
struct runtime;

struct request {
	const char *method;
	const char *path; /* percent-decoded; the query is not part of it */
	const char *id; /* the request id: X-Request-Id, the client's or new */
	/* A valid traceparent's fields; NULL when none came. For a request
	 * the handler makes: trace_outbound(req->trace, buf), and
	 * request_tracestate(req, buf, len) passed on as it came. */
	const struct trace *trace;
	struct app *app;                     /* the service's (src/app/app.h) */
	struct runtime *runtime;             /* microd's own (src/runtime.h) */
	const struct request_params *params; /* never NULL once dispatched */
	json_t *body; /* parsed JSON, for ROUTE_JSON_BODY routes; borrowed */
	/* The body as sent, for ROUTE_RAW_BODY routes: raw_len bytes and a NUL
	 * after them; "" for none. Borrowed. */
	const char *raw;
	size_t raw_len;
	/* Looks up a header or query argument, or (name unused) the peer;
	 * NULL when absent. */
	/* Set by the engine while a blocking handler runs: a descriptor that
	 * turns readable (POLLIN) once the client has gone, its connection
	 * closed or reset. NULL: not watched (an I/O-thread handler, the
	 * handler harness). Read through request_gone_fd(). */
	const int *gone_fd;
	/* now_ms() (clock.h) when the engine queued the request for the
	 * handler pool and when its handler began to run there; both 0: it
	 * was not (an I/O-thread handler, the harness). The time between is
	 * taken from the database's acquire timeout. */
	long long queued_ms, started_ms;
	const char *(*lookup)(void *ctx, enum request_field field,
	                      const char *name);
	/* Calls fn with the value of every header line or query argument
	 * named name, in order (NULL for an argument given without '='). */
	void (*each)(void *ctx, enum request_field field, const char *name,
	             void (*fn)(void *arg, const char *value), void *arg);
	void *ctx;
};

struct reply_field {
	char *name, *value; /* one allocation, name first; owned */
};

/* Most headers a handler may add to one reply (reply_header). */
#define REPLY_HEADERS_MAX 8

struct reply {
	unsigned int status;
	json_t *body;             /* owned by the reply */
	int problem;              /* body is RFC 9457 problem details */
	char allow[64];           /* Allow header for a 405, else empty */
	unsigned int retry_after; /* seconds for Retry-After; 0: none */
	/* A non-JSON body (the metrics text) instead of body; owned. */
	char *text;
	size_t text_len;
	const char *text_type;
	/* Headers the handler added, in order (reply_header). */
	size_t n_headers;
	struct reply_field headers[REPLY_HEADERS_MAX];
};

typedef void handler_fn(const struct request *, struct reply *);

static inline const char *
request_header(const struct request *req, const char *name)
{
	return req->lookup != NULL ? req->lookup(req->ctx, REQUEST_HEADER, name)
	                           : NULL;
}

static inline const char *
request_query(const struct request *req, const char *name)
{
	return req->lookup != NULL ? req->lookup(req->ctx, REQUEST_QUERY, name)
	                           : NULL;
}

/* Every value of a repeated query argument (?exclude=a&exclude=b). */
static inline void
request_query_each(const struct request *req, const char *name,
                   void (*fn)(void *arg, const char *value), void *arg)
{
	if (req->each != NULL)
		req->each(req->ctx, REQUEST_QUERY, name, fn, arg);
}

/* Every line of a repeated header (X-Forwarded-For), in the order sent. */
static inline void
request_header_each(const struct request *req, const char *name,
                    void (*fn)(void *arg, const char *value), void *arg)
{
	if (req->each != NULL)
		req->each(req->ctx, REQUEST_HEADER, name, fn, arg);
}

/* The client's address ("127.0.0.1", "::1"), worked out when asked; ""
 * when unknown. */
static inline const char *
request_peer(const struct request *req)
{
	const char *p = req->lookup != NULL
	                    ? req->lookup(req->ctx, REQUEST_PEER, "")
	                    : NULL;

	return p != NULL ? p : "";
}

struct request_join {
	char *buf;
	size_t len, used;
	int full;
};

static inline void
request_join_line(void *arg, const char *value)
{
	struct request_join *j = (struct request_join *)arg;
	size_t n = value != NULL ? strlen(value) : 0;
	size_t need;

	/* libmicrohttpd keeps the spaces and tabs that end a value. */
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	need = n + (j->used > 0 ? 1 : 0);
	if (n == 0 || j->full)
		return;
	if (j->used + need >= j->len) { /* this line and the rest left out */
		j->full = 1;
		return;
	}
	if (j->used > 0)
		j->buf[j->used++] = ',';
	memcpy(j->buf + j->used, value, n);
	j->used += n;
	j->buf[j->used] = '\0';
}

/*
 * The tracestate that came beside a valid traceparent, its lines joined
 * with ',' (empty ones left out, spaces and tabs after each dropped), into
 * buf: len - 1 characters at most and a NUL (Level 1 asks that 512 be
 * passed on: len 513). The length; 0 with "" when none came or the
 * traceparent was absent or invalid. From the first line that does not
 * fit, the lines are left out.
 */
static inline size_t
request_tracestate(const struct request *req, char *buf, size_t len)
{
	struct request_join j = {buf, len, 0, 0};

	if (len == 0)
		return 0;
	buf[0] = '\0';
	/* A trace microd began (traces on, no traceparent) has none. */
	if (req->trace != NULL && req->trace->span_id[0] != '\0')
		request_header_each(req, "tracestate", request_join_line, &j);
	return j.used;
}

/* The path parameter {name} of the route that matched; NULL if it has none.
 */
static inline const char *
request_param(const struct request *req, const char *name)
{
	size_t len = strlen(name);

	if (req->params == NULL)
		return NULL;
	for (size_t i = 0; i < req->params->n; i++)
		if (req->params->at[i].name_len == len &&
		    memcmp(req->params->at[i].name, name, len) == 0)
			return req->params->at[i].value;
	return NULL;
}

/*
 * A descriptor to poll (with whatever else a blocking handler waits on) that
 * turns readable once the client has gone; -1 when nobody watches. Polling
 * it is all a handler may do: reading it or closing it is the engine's.
 */
static inline int
request_gone_fd(const struct request *req)
{
	return req->gone_fd != NULL ? *req->gone_fd : -1;
}

/*
 * The PostgreSQL pool of --database (src/db/db.h: db_acquire, db_release),
 * or NULL without it. Only a blocking handler (ROUTE_BLOCKING, run on the
 * handler pool) may use it: an acquire waits up to
 * --database-acquire-timeout and a statement up to --database-timeout,
 * which would stall every connection of an I/O thread.
 */
static inline struct db_pool *
request_db(const struct request *req)
{
	return req->runtime != NULL ? req->runtime->db : NULL;
}

#endif
