/* SPDX-License-Identifier: MIT */
/*
 * exchange.c -- one request through libmicrohttpd's calls: target, head,
 * before-handler chain, body, handler, access log
 */
#include "internal.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "otel.h"
#include "policy.h"
#include "reply.h"
#include "reqid.h"
#include "router.h"
#include "runtime.h"
#include "trace.h"

/*
 * A chunked body that passes max_body cannot be answered until it ends:
 * libmicrohttpd 0.9.75 queues a response only before the body or after all of
 * it. Up to max_body more bytes (at least this many) are read and dropped in
 * the hope that it ends, for a 413; past that the connection is closed, so a
 * client streaming without end holds a worker for no longer than that.
 */
#define DISCARD_MIN ((size_t)64 << 10)

/* A body this large, once freed, asks for malloc_trim. */
#define TRIM_AFTER ((size_t)64 << 10)

/* Failed probe answers are access-logged once in this long at most. */
#define PROBE_LOG_EVERY_NS 1000000000LL

void
exchange_unref(struct exchange *ex)
{
	if (atomic_fetch_sub(&ex->refs, 1) != 1)
		return;
	free(ex->body);
	free(ex->snap.at);
	json_decref(ex->job_body);
	if (ex->job_reply != NULL)
		reply_release(ex->job_reply);
	free(ex->job_reply);
	if (ex->early != NULL)
		reply_release(ex->early);
	free(ex->early);
	free(ex->fields);
	free(ex);
}

/*
 * The raw target of the request this thread is parsing, from on_target:
 * libmicrohttpd 0.9.75 calls the URI log callback, then unescapes the query
 * arguments, then the path (connection.c, parse_initial_message), each
 * through unescape() below. Per thread, as each worker parses its own.
 */
static _Thread_local const char *unescaping_target;

/*
 * MHD_OPTION_UNESCAPE_CALLBACK: query arguments are percent-decoded as the
 * library would, but the path is left as sent: microd matches routes on the
 * raw path and decodes each segment itself, so "%2F" stays data.
 */
size_t
unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	if (s == unescaping_target) {
		unescaping_target = NULL;
		return strlen(s);
	}
	return MHD_http_unescape(s);
}

/*
 * Takes n more bytes of the process-wide body budget for ex; 0, or -1 when
 * they would pass it (nothing is taken then).
 */
static int
reserve_body(struct server *srv, struct exchange *ex, size_t n)
{
	size_t cur = atomic_load(&srv->body_bytes);

	do {
		if (n > srv->body_budget || cur > srv->body_budget - n)
			return -1;
	} while (
	    !atomic_compare_exchange_weak(&srv->body_bytes, &cur, cur + n));
	ex->reserved += n;
	return 0;
}

/*
 * libmicrohttpd 0.9.75 ends the target string at a raw NUL. In place, the
 * target runs from url to the space before version; when the string is
 * shorter than that, the client sent a NUL in it.
 */
static int
nul_in_target(const char *url, const char *version, const char *target)
{
	uintptr_t u = (uintptr_t)url, v = (uintptr_t)version;

	return v > u && v - u - 1 > strlen(target) &&
	       v - u - 1 <= strlen(target) + VALUE_HIDE_MAX;
}

/*
 * The before-handler chain, on the headers alone, so a refused request's
 * body is never read. 1 when a link answered: sent at once with the
 * connection closed when a body follows, else kept for the second call,
 * which keeps the connection (see the notes on the first call).
 */
static int
run_chain(struct server *srv, struct MHD_Connection *conn, struct exchange *ex,
          const char *method, int has_body, enum MHD_Result *ret)
{
	struct request req = {
	    .lookup = lookup_field, .each = each_field, .ctx = ex};
	struct reply rep = {0};
	struct middleware_fields f = {.ratelimit = ""};
	const struct route *rt = ex->res.route;
	int answered;

	/* A path no route serves goes through it too, with no route flags:
	 * a flood of 404s is limited, and a client without a token gets 401
	 * whatever the path. A wrong method or a bad parameter has the row
	 * its path matched (a probe's stays exempt). */
	if (ex->res.match == ROUTE_FOUND) {
		request_view(ex, method, &req);
	} else {
		req.method = method;
		req.path = ex->path;
		req.id = ex->request_id;
		req.trace = ex->trace.trace_id[0] != '\0' ? &ex->trace : NULL;
		req.app = ex->app;
		req.runtime = ex->runtime;
	}
	answered = middleware_run(ex->runtime->middleware, &req,
	                          rt != NULL ? rt->flags : 0, &rep, &f);
	if (f.ratelimit[0] != '\0' || f.www_authenticate[0] != '\0') {
		ex->fields = malloc(sizeof(*ex->fields));
		if (ex->fields != NULL) /* else the reply goes without them */
			*ex->fields = f;
	}
	if (!answered)
		return 0;
	if (!has_body) {
		ex->early = malloc(sizeof(*ex->early));
		if (ex->early != NULL) {
			*ex->early = rep; /* the exchange's now */
			ex->takes_body = 0;
			*ret = MHD_YES;
			return 1;
		}
	}
	*ret = send_reply(srv, conn, ex, &rep, 1);
	return 1;
}

/*
 * First call for a request: route it and decide what can be decided from the
 * headers alone. A refusal of a request with a body is sent at once, before
 * any 100 Continue; MHD then skips the body and closes the connection, which
 * is what a refused body calls for.
 */
static enum MHD_Result
on_headers(struct server *srv, struct MHD_Connection *conn, struct exchange *ex,
           const char *method, const char *url, const char *version)
{
	struct policy_framing f;
	struct policy_verdict v =
	    check_fields(conn, MHD_HEADER_KIND, method, version, &f);

	if (v.status != 0)
		return send_error(srv, conn, ex, v.status, 1, v.detail);
	if (nul_in_target(url, version, ex->target))
		return send_error(srv, conn, ex, 400, 1,
		                  "a NUL byte in the request target");
	/* Cut the raw target at its query only now: the policy read it all. */
	v = policy_decode_target(ex->target, ex->path, strlen(ex->target) + 2);
	ex->target[policy_target_path_end(ex->target) - ex->target] = '\0';
	if (v.status != 0)
		return send_error(srv, conn, ex, v.status, 1, v.detail);
	ex->chunked = f.chunked;
	/* Matched on the raw path, which url is (see unescape()): each
	 * segment is decoded only once split. */
	router_find(method, policy_target_path(url), srv->hide, ex->params,
	            ex->params_len, &ex->res);
	ex->max_body = srv->max_body;
	if (ex->res.match == ROUTE_FOUND) {
		const struct route *rt = ex->res.route;

		if (rt->max_body > 0)
			ex->max_body = rt->max_body;
		ex->takes_body =
		    (rt->flags & (ROUTE_JSON_BODY | ROUTE_RAW_BODY)) != 0;
		ex->nul = (rt->flags & ROUTE_RAW_BODY) != 0;
	}
	/* A probe skips every link: nothing to set up for the chain. */
	if (ex->runtime != NULL && ex->runtime->middleware != NULL &&
	    (ex->res.route == NULL ||
	     !middleware_skips(ex->res.route->flags))) {
		enum MHD_Result ret;

		if (run_chain(srv, conn, ex, method, f.chunked || f.length > 0,
		              &ret))
			return ret;
	}
	if (f.sized && f.length > ex->max_body)
		return send_error(srv, conn, ex, 413, 1,
		                  "the request body is larger than the limit");
	if (ex->res.match == ROUTE_FOUND &&
	    (ex->res.route->flags & ROUTE_JSON_BODY) &&
	    !dispatch_is_json(MHD_lookup_connection_value(
	        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
		return send_error(srv, conn, ex, 415, 1, DISPATCH_NOT_JSON);
	/* A body that will be buffered takes its share of the budget now,
	 * before any of it is read; a chunked one as it grows. */
	if (ex->takes_body && f.sized && f.length > 0 &&
	    reserve_body(srv, ex, f.length) != 0)
		return send_busy(srv, conn, ex);
	if (ex->takes_body && f.sized)
		ex->expect = (size_t)f.length + ex->nul;
	if (ex->res.match != ROUTE_FOUND && (f.chunked || f.length > 0)) {
		struct request req = {.method = method, .path = ex->path};
		struct reply rep = {0};

		router_reply_unmatched(&ex->res, &req, &rep);
		return send_reply(srv, conn, ex, &rep, 1);
	}
	return MHD_YES;
}

/* A chunk of body: buffer it when the route takes one, within max_body. */
static enum MHD_Result
on_body(struct server *srv, struct exchange *ex, const char *data, size_t size)
{
	ex->received += size;
	if (ex->received > ex->max_body) {
		size_t budget =
		    ex->max_body > DISCARD_MIN ? ex->max_body : DISCARD_MIN;

		free(ex->body); /* a 413 is coming: keep none of it */
		ex->body = NULL;
		ex->len = ex->cap = 0;
		if (ex->received - ex->max_body <= budget)
			return MHD_YES;
		log_warn("%s: chunked body passed the limit by more than %zu "
		         "bytes; closing the connection",
		         __func__, budget);
		return MHD_NO;
	}
	if (!ex->takes_body || ex->over_budget)
		return MHD_YES; /* read and dropped */
	/* A raw body gets one byte more, for the NUL after it. */
	if (ex->len + size + ex->nul > ex->cap) {
		size_t cap = ex->cap > 0      ? ex->cap
		             : ex->expect > 0 ? ex->expect
		                              : 4096;
		char *p;

		while (cap < ex->len + size + ex->nul)
			cap *= 2;
		if (cap > ex->max_body + ex->nul)
			cap = ex->max_body + ex->nul;
		/* A sized body reserved all of it up front; the NUL is free. */
		if (cap - ex->nul > ex->reserved &&
		    reserve_body(srv, ex, cap - ex->nul - ex->reserved) != 0) {
			free(ex->body); /* a 503 comes at the end */
			ex->body = NULL;
			ex->len = ex->cap = 0;
			ex->over_budget = 1;
			return MHD_YES;
		}
		p = realloc(ex->body, cap);
		if (p == NULL)
			return MHD_NO;
		ex->body = p;
		ex->cap = cap;
	}
	memcpy(ex->body + ex->len, data, size);
	ex->len += size;
	return MHD_YES;
}

/* The request has arrived whole: run its handler and send the reply. */
static enum MHD_Result
on_complete_request(struct server *srv, struct MHD_Connection *conn,
                    struct exchange *ex, const char *method)
{
	struct request req = {.method = method,
	                      .path = ex->path,
	                      .lookup = lookup_field,
	                      .each = each_field,
	                      .ctx = ex};
	struct reply rep = {0};
	enum MHD_Result ret;
	/*
	 * 0.9.75 ends a trailer section at any line whose first byte becomes
	 * a NUL (a colon, a NUL), as it ends a head, and nothing tells microd
	 * where the body really ended: after a chunked request the connection
	 * is closed, so whatever follows it is never read as a request.
	 */
	int close_after = ex->chunked;

	if (atomic_load(&ex->job_state) != JOB_NONE)
		return on_resumed(srv, conn, ex);
	if (ex->early != NULL) { /* the chain's answer, from on_headers */
		rep = *ex->early;
		free(ex->early);
		ex->early = NULL;
		return send_reply(srv, conn, ex, &rep, close_after);
	}
	if (ex->received > ex->max_body)
		return send_error(srv, conn, ex, 413, 1,
		                  "the request body is larger than the limit");
	if (ex->chunked) {
		struct policy_verdict v =
		    check_fields(conn, MHD_FOOTER_KIND, method, NULL, NULL);

		if (v.status != 0)
			return send_error(srv, conn, ex, v.status, 1, v.detail);
	}
	if (ex->res.match != ROUTE_FOUND) {
		router_reply_unmatched(&ex->res, &req, &rep);
		return send_reply(srv, conn, ex, &rep, close_after);
	}
	if (ex->over_budget)
		return send_busy(srv, conn, ex);
	if (ex->body != NULL && ex->nul)
		ex->body[ex->len] = '\0'; /* room was kept for it */
	if ((ex->res.route->flags & ROUTE_JSON_BODY) &&
	    dispatch_json(ex->body, ex->len, &req.body, &rep) != 0)
		return send_reply(srv, conn, ex, &rep, close_after);
	ex->method_head = strcmp(method, "HEAD") == 0;
	if (ex->res.route->flags & ROUTE_BLOCKING)
		return start_job(srv, conn, ex, req.body);
	request_view(ex, method, &req);
	dispatch_run(ex->res.route, &req, &rep);
	ret = send_reply(srv, conn, ex, &rep, close_after);
	json_decref(req.body);
	return ret;
}

/* The client's X-Request-Id when it is a sane one, else a new one. */
static void
start_request_id(struct MHD_Connection *conn, struct exchange *ex)
{
	const char *id =
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");

	if (reqid_valid(id))
		memcpy(ex->request_id, id, strlen(id) + 1);
	else
		reqid_new(ex->request_id);
}

static void
count_value(void *arg, const char *value)
{
	(void)value;
	(*(unsigned int *)arg)++;
}

/* The client's traceparent; one that breaks a rule counts as absent, and
 * so do two, as Level 1 says. */
static void
start_trace(struct MHD_Connection *conn, struct exchange *ex)
{
	unsigned int lines = 0;
	struct each_arg a = {"traceparent", count_value, &lines};

	if (trace_parse(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                            "traceparent"),
	                &ex->trace) != 0)
		return;
	MHD_get_connection_values(conn, MHD_HEADER_KIND, each_value, &a);
	if (lines > 1)
		memset(&ex->trace, 0, sizeof(ex->trace));
}

/*
 * A request's head has arrived whole: the connection no longer counts as
 * waiting for its first request, and its header deadline stops until the
 * request ends. *cs gets the connection's state (NULL: none). -1 when the
 * connection was shut down just before (past its deadline, or to make room
 * at the limit): the request must not run, as no answer can reach it.
 */
static int
mark_began(struct server *srv, struct MHD_Connection *conn,
           struct conn_state **out)
{
	const union MHD_ConnectionInfo *info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_state *cs = info != NULL ? info->socket_context : NULL;

	*out = cs;
	if (cs != NULL && cs->client && waiting_busy(&cs->waiter) != 0)
		return -1;
	if (cs != NULL && !cs->began && !cs->ticker) {
		cs->began = 1;
		atomic_fetch_sub(&srv->waiting, 1);
	}
	return 0;
}

enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload_data,
           size_t *upload_data_size, void **req_cls)
{
	struct server *srv = cls;
	struct exchange *ex = *req_cls;
	enum MHD_Result ret;

	if (ex == NULL)
		return MHD_NO; /* on_target ran out of memory */
	if (!ex->began) {
		/* Shut down already: closed unanswered, as if never read. */
		if (mark_began(srv, conn, &ex->cs) != 0)
			return MHD_NO;
		ex->began = 1;
		if (ex->cs != NULL && ex->cs->ticker) {
			ex->ticker = 1; /* not a request: never counted */
			return ticker_call(srv, conn, 1);
		}
		ticker_poke();
		metrics_request_started();
		ex->own = ex->cs != NULL && !ex->cs->client;
		ex->start_ns = now_ns();
		ex->method = method;
		start_request_id(conn, ex);
		start_trace(conn, ex);
		ex->traced = otel_server_begin(
		    ex->runtime != NULL ? ex->runtime->otel : NULL, &ex->trace);
		ex->conn = conn;
		/* url: the raw path (unescape() leaves it as sent); ex->path
		 * is decoded by microd. */
		return on_headers(srv, conn, ex, method, url, version);
	}
	if (ex->ticker)
		return ticker_call(srv, conn, 0);
	if (*upload_data_size > 0) {
		ret = on_body(srv, ex, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return ret;
	}
	return on_complete_request(srv, conn, ex, method);
}

/*
 * The request line has been read: keep the target as the client sent it,
 * before libmicrohttpd splits off the query and percent-decodes the path
 * (0.9.75 turns "%00" into a NUL that ends the path). What this returns is
 * the request's *req_cls from then on.
 */
void *
on_target(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct server *srv = cls;
	size_t n = uri != NULL ? strlen(uri) : 0;
	struct exchange *ex;

	(void)conn;
	unescaping_target = uri; /* see unescape() */
	/* target, path (n + 2, see policy_decode_target), params (n + one
	 * NUL per parameter, see router_match) */
	ex = calloc(1, sizeof(*ex) + 3 * n + REQUEST_PARAMS_MAX + 4);
	if (ex == NULL)
		return NULL;
	atomic_init(&ex->refs, 1);
	atomic_init(&ex->job_state, JOB_NONE);
	ex->res.match = ROUTE_NOT_FOUND; /* until routed */
	if (n > 0)
		memcpy(ex->target, uri, n);
	ex->path = ex->target + n + 1;
	ex->params = ex->path + n + 2;
	ex->params_len = n + REQUEST_PARAMS_MAX + 1;
	ex->app = srv->app;
	ex->runtime = srv->runtime;
	return ex; /* libmicrohttpd's reference: on_completed */
}

/*
 * A probe that fails is asked again every few seconds by every prober, and
 * a load balancer or a loop can ask thousands of times a second: its answer
 * is the checks' state, whose changes are logged once by the checks
 * themselves. So failed probe answers get one access-log line a second, the
 * first at once; the line says how many were left out before it. 1: log this
 * one, with *skipped set.
 */
static int
probe_log_gate(struct server *srv, long long now, unsigned long long *skipped)
{
	long long next = atomic_load(&srv->probe_log_next_ns);

	if (now >= next &&
	    atomic_compare_exchange_strong(&srv->probe_log_next_ns, &next,
	                                   now + PROBE_LOG_EVERY_NS)) {
		*skipped = atomic_exchange(&srv->probe_log_skipped, 0);
		return 1;
	}
	atomic_fetch_add(&srv->probe_log_skipped, 1);
	return 0;
}

/* One access-log line; only built when the level lets it through. */
static void
log_request(struct server *srv, struct MHD_Connection *conn,
            struct exchange *ex, long long took_ns)
{
	struct access_entry e = {0};
	int probe = ex->res.match == ROUTE_FOUND && ex->res.route != NULL &&
	            (ex->res.route->flags & ROUTE_PROBE);

	if (probe && ex->status >= 200 && ex->status < 400 && !srv->log_probes)
		return;
	if (!log_enabled(ex->status >= 500 ? LOG_WARN : LOG_INFO))
		return;
	if (probe && ex->status == 503 && !srv->log_probes &&
	    !probe_log_gate(srv, ex->start_ns + took_ns, &e.skipped))
		return;
	e.method = ex->method;
	e.path = ex->target;
	e.route = ex->res.route != NULL ? ex->res.route->path : "unmatched";
	e.status = ex->status;
	e.bytes = strcmp(ex->method, "HEAD") == 0 ? 0 : ex->bytes;
	e.duration_ms = (double)took_ns / 1e6;
	e.remote = exchange_peer(ex);
	e.request_id = ex->request_id;
	if (ex->trace.trace_id[0] != '\0') {
		e.trace_id = ex->trace.trace_id;
		e.span_id = ex->trace.span_id;
		e.trace_flags = ex->trace.flags;
	}
	e.user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                           MHD_HTTP_HEADER_USER_AGENT);
	log_access(&e);
}

/* The request's SERVER span, when it is recorded: a probe's only with
 * --log-probes, as for the access log; microd's own requests never. */
static void
trace_request(struct server *srv, struct MHD_Connection *conn,
              struct exchange *ex, long long end_ns)
{
	const struct route *rt =
	    ex->res.match == ROUTE_FOUND ? ex->res.route : NULL;
	struct otel_server_info i = {.method = ex->method,
	                             .route = rt != NULL ? rt->path : NULL,
	                             .path = ex->target,
	                             .status = ex->status,
	                             .start_ns = ex->start_ns,
	                             .end_ns = end_ns};

	if (!ex->traced || ex->status == 0 || ex->own ||
	    (rt != NULL && (rt->flags & ROUTE_PROBE) && !srv->log_probes))
		return;
	i.peer = exchange_peer(ex);
	i.user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                           MHD_HTTP_HEADER_USER_AGENT);
	otel_server_end(ex->runtime->otel, &ex->trace, &i);
}

void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct exchange *ex = *req_cls;
	long long took;

	(void)toe;
	if (ex == NULL)
		return;
	/* Refused by libmicrohttpd before the handler, or a ticker's. */
	if (!ex->began || ex->ticker) {
		exchange_unref(ex);
		*req_cls = NULL;
		return;
	}
	took = now_ns() - ex->start_ns;
	/* The next head's deadline runs from the end of this request. */
	if (ex->cs != NULL && ex->cs->client)
		waiting_idle(&ex->cs->waiter, ex->start_ns + took);
	/* The pool check's requests are not traffic: not counted. */
	if (ex->status != 0 && !ex->own)
		metrics_observe(ex->method,
		                ex->res.route != NULL
		                    ? router_index(ex->res.route)
		                    : METRICS_UNMATCHED,
		                ex->status, took);
	log_request(srv, conn, ex, took);
	trace_request(srv, conn, ex, ex->start_ns + took);
	if (ex->reserved > 0) {
		atomic_fetch_sub(&srv->body_bytes, ex->reserved);
		/* glibc keeps what a large body freed: let the main thread
		 * hand it back (server_trim). */
		if (ex->reserved >= TRIM_AFTER)
			atomic_store(&srv->trim_wanted, 1);
	}
	exchange_unref(ex); /* a blocking handler may still hold it */
	*req_cls = NULL;
	metrics_request_finished();
}
