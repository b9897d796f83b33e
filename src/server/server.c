/* SPDX-License-Identifier: MIT */
/* server.c -- libmicrohttpd thread pool */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dispatch.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "policy.h"
#include "pool.h"
#include "reply.h"
#include "reqid.h"
#include "router.h"
#include "runtime.h"
#include "tls.h"
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

/* A fall of this many connections from their peak asks for it too. */
#define TRIM_CONNECTIONS 256

/* How long the stop lets resumed handler-pool requests get their 503. */
#define STOP_ANSWER_MS 500

/* Failed probe answers are access-logged once in this long at most. */
#define PROBE_LOG_EVERY_NS 1000000000LL

/*
 * 0.9.75 deadlocks a worker that gets a connection from MHD_add_connection
 * while it is at its connection limit (in new_connection_process_ the limit
 * branch never unlocks cleanup_connection_mutex), and MHD_add_connection's
 * check for room races with the worker's own accepts. So microd enforces
 * --connection-limit itself, over all workers (on_accept), and gives the
 * library a limit no worker can reach: every client on one worker, plus one
 * client per other worker accepted in the same instant, plus the watchdog's
 * one check per worker, plus a spare.
 */
#define LIBRARY_LIMIT(limit, workers)                                          \
	((intptr_t)(workers) * ((intptr_t)(limit) + (intptr_t)(workers) + 2))

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
static size_t
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
	if (ex->runtime != NULL && ex->runtime->middleware != NULL) {
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
		return send_error(srv, conn, ex, 415, 1,
		                  "the request body must be application/json");
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

/* The connection's first request has begun: it no longer counts as waiting. */
/* Returns whether the connection is one of microd's own (its checks). */
static int
mark_began(struct server *srv, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_state *cs = info != NULL ? info->socket_context : NULL;

	if (cs != NULL && !cs->began) {
		cs->began = 1;
		atomic_fetch_sub(&srv->waiting, 1);
	}
	return cs != NULL && !cs->client;
}

static enum MHD_Result
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
		ex->began = 1;
		metrics_request_started();
		ex->own = mark_began(srv, conn);
		ex->start_ns = now_ns();
		ex->method = method;
		start_request_id(conn, ex);
		start_trace(conn, ex);
		ex->conn = conn;
		/* url: the raw path (unescape() leaves it as sent); ex->path
		 * is decoded by microd. */
		return on_headers(srv, conn, ex, method, url, version);
	}
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
static void *
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

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct exchange *ex = *req_cls;
	long long took;

	(void)toe;
	if (ex == NULL)
		return;
	if (!ex->began) { /* refused by libmicrohttpd before the handler */
		exchange_unref(ex);
		*req_cls = NULL;
		return;
	}
	took = now_ns() - ex->start_ns;
	/* The pool check's requests are not traffic: not counted. */
	if (ex->status != 0 && !ex->own)
		metrics_observe(ex->method,
		                ex->res.route != NULL
		                    ? router_index(ex->res.route)
		                    : METRICS_UNMATCHED,
		                ex->status, took);
	log_request(srv, conn, ex, took);
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

/*
 * libmicrohttpd's accept policy: --connection-limit over all workers (see
 * LIBRARY_LIMIT). Clients are counted once on_connection sees them, so
 * workers accepting in the same instant may pass the limit by one each,
 * for that instant. The watchdog's checks count against it too: at the
 * limit they are refused, which the watchdog takes for busy, not wedged.
 */
static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct server *srv = cls;

	(void)addr;
	(void)len;
	if (atomic_load(&srv->clients) < srv->connection_limit)
		return MHD_YES;
	atomic_fetch_add(&srv->refused, 1);
	metrics_connection_refused();
	return MHD_NO;
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
              enum MHD_ConnectionNotificationCode code)
{
	struct server *srv = cls;
	struct conn_state *cs;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		int client = !is_own_connection(conn);

		unsigned int now = metrics_connection_opened();
		unsigned int peak = atomic_load(&srv->peak_conns);

		while (now > peak && !atomic_compare_exchange_weak(
		                         &srv->peak_conns, &peak, now))
			;
		/* Without it the connection just never counts as waiting. */
		cs = calloc(1, sizeof(*cs));
		if (cs != NULL) {
			atomic_fetch_add(&srv->waiting, 1);
			cs->client = client;
			if (client)
				atomic_fetch_add(&srv->clients, 1);
		}
		*socket_ctx = cs; /* freed below, when the connection closes */
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		metrics_connection_closed();
		cs = *socket_ctx;
		if (cs != NULL && !cs->began)
			atomic_fetch_sub(&srv->waiting, 1);
		if (cs != NULL && cs->client)
			atomic_fetch_sub(&srv->clients, 1);
		free(cs);
		*socket_ctx = NULL;
	}
}

void
server_trim(struct server *srv)
{
	unsigned int now = metrics_connections();
	int burst = atomic_load(&srv->peak_conns) >= now + TRIM_CONNECTIONS;

	if (!atomic_exchange(&srv->trim_wanted, 0) && !burst)
		return;
	atomic_store(&srv->peak_conns, now);
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

unsigned long long
server_refused(const struct server *srv)
{
	return atomic_load(&srv->refused);
}

/*
 * libmicrohttpd's own messages, at warn. 0.9.75 cannot tell that a socket
 * handed in with MHD_add_connection (the watchdog's socketpair) is not TCP: it
 * tries TCP_NODELAY/TCP_CORK on it and reports their harmless failure on every
 * such request. Those socket-tuning reports go to debug, the rest stay warn.
 */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	int tuning, saved = errno; /* MHD sets errno, then logs */

	(void)cls;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	msg[strcspn(msg, "\n")] = '\0';
	tuning = strncmp(msg, "Setting TCP_", 12) == 0 ||
	         strncmp(msg, "Failed to push the data", 23) == 0;
	log_peer(tuning ? LOG_DEBUG : LOG_WARN, "%s", msg);
	errno = saved;
}

/* The address as logged, and the port, from the socket itself. */
static void
describe_socket(int fd, char *address, size_t alen, unsigned int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(address, alen, "fd %d", fd);
		return;
	}
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		*port = ntohs(sin->sin_port);
		snprintf(address, alen, "%s:%u", host, *port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		*port = ntohs(sin6->sin6_port);
		snprintf(address, alen, "[%s]:%u", host, *port);
	} else if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
		               ? len - offsetof(struct sockaddr_un, sun_path)
		               : 0;

		/* An abstract name starts with NUL; show it as '@'. */
		if (n > 0 && sun->sun_path[0] == '\0')
			snprintf(address, alen, "unix:@%.*s", (int)(n - 1),
			         sun->sun_path + 1);
		else
			snprintf(address, alen, "unix:%.*s",
			         (int)strnlen(sun->sun_path, n), sun->sun_path);
	} else {
		snprintf(address, alen, "fd %d", fd);
	}
}

/* Fills ss from the configured address; adds the IPv6 flags it needs. */
static int
bind_address(const struct config *cfg, unsigned int port,
             struct sockaddr_storage *ss, unsigned int *flags)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, cfg->bind, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, cfg->bind, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		/* "::" serves IPv4 too; a specific address only itself. */
		*flags |= IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
		              ? MHD_USE_DUAL_STACK
		              : MHD_USE_IPv6;
		return 0;
	}
	return -1;
}

/* Whether a route the server serves may block: then it needs the pool. */
static int
needs_pool(unsigned int hide)
{
	for (size_t i = 0; i < router_count(); i++) {
		const struct route *rt = router_at(i);

		if ((rt->flags & ROUTE_BLOCKING) && !(rt->flags & hide))
			return 1;
	}
	return 0;
}

/*
 * One daemon on the access handlers: on listen_fd when one was passed, else
 * bound to --bind and port; HTTPS with tls, its certificate from
 * tls_retrieve. Logs why on failure. Fills address and *port_out.
 */
static struct MHD_Daemon *
start_daemon(struct server *srv, const struct config *cfg, unsigned int flags,
             const struct MHD_OptionItem *limits, int listen_fd,
             unsigned int port, int tls, char *address, size_t alen,
             unsigned int *port_out)
{
	struct sockaddr_storage ss;
	struct MHD_OptionItem where[4] = {{MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL}};
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;

	if (listen_fd >= 0) {
		/* The socket's family decides; the bind address is unused. */
		where[0] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET,
		                                   (intptr_t)listen_fd, NULL};
	} else if (bind_address(cfg, port, &ss, &flags) == 0) {
		where[0] =
		    (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
	} else {
		log_error("%s: bad bind address %s", __func__, cfg->bind);
		return NULL;
	}
	if (tls) {
		flags |= MHD_USE_TLS;
		where[1] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, (void *)tls_retrieve};
		where[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES,
		                                   0, srv->tls_priorities};
	}
	d = MHD_start_daemon(flags, (uint16_t)port, on_accept, srv, on_request,
	                     srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	                     MHD_OPTION_URI_LOG_CALLBACK, on_target, srv,
	                     MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
	                     MHD_OPTION_ARRAY, where, MHD_OPTION_ARRAY, limits,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
	                     MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
	                     MHD_OPTION_END);
	if (d == NULL) {
		if (listen_fd >= 0)
			log_error("%s: cannot serve the socket passed as "
			          "descriptor %d",
			          __func__, listen_fd);
		else
			log_error("%s: cannot listen on %s port %u%s", __func__,
			          cfg->bind, port,
			          tls ? " for HTTPS (see the lines above)"
			              : "");
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	describe_socket(info != NULL ? (int)info->listen_fd : listen_fd,
	                address, alen, port_out);
	return d;
}

struct server *
server_start(const struct config *cfg, int listen_fd, int tls_listen_fd,
             struct runtime *runtime, struct app *app)
{
	struct server *srv;
	/*
	 * poll by default: in epoll mode libmicrohttpd 0.9.75 reads events
	 * 128 at a time and, when a batch comes back full, waits again with
	 * its blocking timeout before serving it, so a thread that gets 128
	 * requests at once stalls until another event or a timeout
	 * (tests/clients.py shows it).
	 */
	unsigned int flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
	    MHD_ALLOW_SUSPEND_RESUME |
	    (cfg->event_loop == EVENT_LOOP_EPOLL ? MHD_USE_EPOLL
	                                         : MHD_USE_POLL);

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	srv->quiesced_fd = MHD_INVALID_SOCKET;
	srv->tls_quiesced_fd = MHD_INVALID_SOCKET;
	srv->max_body = cfg->max_body;
	srv->body_budget = cfg->body_budget;
	atomic_init(&srv->body_bytes, 0);
	atomic_init(&srv->trim_wanted, 0);
	atomic_init(&srv->peak_conns, 0);
	srv->workers = cfg->threads > 1 ? cfg->threads : 1;
	srv->connection_limit = cfg->connection_limit;
	for (size_t i = 0; i < CHECK_MAX; i++)
		srv->probes[i].fd = -1;
	atomic_init(&srv->clients, 0);
	srv->log_probes = cfg->log_probes;
	srv->passed = listen_fd >= 0;
	atomic_init(&srv->draining, 0);
	atomic_init(&srv->waiting, 0);
	atomic_init(&srv->probe_log_next_ns, 0);
	atomic_init(&srv->probe_log_skipped, 0);
	atomic_init(&srv->refused, 0);
	srv->app = app;
	srv->runtime = runtime;
	srv->hide = cfg->example_routes ? 0 : ROUTE_EXAMPLE;
	if (needs_pool(srv->hide)) {
		srv->pool =
		    pool_start(cfg->handler_threads, cfg->handler_queue);
		if (srv->pool == NULL)
			goto fail;
		log_info("handler pool: %u threads, a queue of %u, for the "
		         "routes that may block",
		         cfg->handler_threads, cfg->handler_queue);
	}

	/* Limits and strictness, shared by both ways of listening. */
	struct MHD_OptionItem limits[] = {
	    {MHD_OPTION_CONNECTION_LIMIT,
	     LIBRARY_LIMIT(cfg->connection_limit, srv->workers), NULL},
	    {MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_ip_limit, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	     (intptr_t)cfg->connection_memory, NULL},
	    /*
	     * The default strictness: level 1 adds only the Host rule (whose
	     * refusal 0.9.75 sends with its status head twice) and the refusal
	     * of a space in the target, and src/policy.c applies both itself,
	     * with problem details; the rules level -1 would add are there too.
	     */
	    {MHD_OPTION_STRICT_FOR_CLIENT, 0, NULL},
	    /* Last, and left out for one thread: 0.9.75 warns on every
	     * start that a pool of one is no pool. */
	    {srv->workers > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
	     srv->workers, NULL},
	    {MHD_OPTION_END, 0, NULL},
	};

	srv->daemon =
	    start_daemon(srv, cfg, flags, limits, listen_fd, cfg->port, 0,
	                 srv->address, sizeof(srv->address), &srv->port);
	if (srv->daemon == NULL)
		goto fail;
	log_info("listening on %s%s", srv->address,
	         srv->passed ? " (socket passed by the service manager)" : "");
	if (cfg->tls_cert != NULL) {
		srv->tls_priorities = strdup(cfg->tls_priorities);
		if (srv->tls_priorities == NULL) {
			log_error("%s: out of memory", __func__);
			goto fail;
		}
		srv->tls_passed = tls_listen_fd >= 0;
		srv->tls_daemon = start_daemon(
		    srv, cfg, flags, limits, tls_listen_fd, cfg->tls_port, 1,
		    srv->tls_address, sizeof(srv->tls_address), &srv->tls_port);
		if (srv->tls_daemon == NULL)
			goto fail;
		log_info("listening on %s for HTTPS (%s)%s", srv->tls_address,
		         srv->tls_priorities,
		         srv->tls_passed
		             ? " (socket passed by the service manager)"
		             : "");
	}
	return srv;
fail:
	if (srv->daemon != NULL)
		MHD_stop_daemon(srv->daemon);
	free(srv->tls_priorities);
	if (srv->pool != NULL) {
		pool_close(srv->pool, NULL);
		pool_stop(srv->pool);
	}
	free(srv);
	return NULL;
}

const char *
server_address(const struct server *srv)
{
	return srv->address;
}

unsigned int
server_port(const struct server *srv)
{
	return srv->port;
}

int
server_quiesce(struct server *srv)
{
	atomic_store(&srv->draining, 1);
	if (srv->tls_daemon != NULL) {
		/* As the HTTP socket below: a passed one stays listening. */
		srv->tls_quiesced_fd = MHD_quiesce_daemon(srv->tls_daemon);
		if (srv->tls_quiesced_fd == MHD_INVALID_SOCKET)
			log_error("%s: cannot stop accepting HTTPS connections",
			          __func__);
		else if (!srv->tls_passed &&
		         shutdown(srv->tls_quiesced_fd, SHUT_RDWR) != 0)
			log_warn("%s: shutdown of the HTTPS listening socket: "
			         "%s",
			         __func__, strerror(errno));
	}
	srv->quiesced_fd = MHD_quiesce_daemon(srv->daemon);
	if (srv->quiesced_fd == MHD_INVALID_SOCKET) {
		log_error("%s: cannot stop accepting connections", __func__);
		return -1;
	}
	/*
	 * A passed socket belongs to the service manager, which keeps it open
	 * across a restart: connections arriving now queue in its backlog for
	 * the next instance, so it must stay listening.
	 */
	if (srv->passed)
		return 0;
	/*
	 * The pool no longer polls the socket, but the kernel still completes
	 * handshakes into its backlog, where clients would wait for nothing.
	 * shutdown() takes it out of the listening state so they are refused
	 * at once and retry elsewhere; the descriptor itself stays open until
	 * the daemon is stopped, so no worker can ever see its number reused.
	 */
	if (shutdown(srv->quiesced_fd, SHUT_RDWR) != 0)
		log_warn("%s: shutdown of the listening socket: %s", __func__,
		         strerror(errno));
	return 0;
}

unsigned int
server_in_flight(const struct server *srv)
{
	(void)srv;
	return metrics_in_flight();
}

unsigned int
server_connections(const struct server *srv)
{
	(void)srv;
	return metrics_connections();
}

unsigned int
server_waiting(const struct server *srv)
{
	return atomic_load(&srv->waiting);
}

const char *
server_library_version(void)
{
	return MHD_get_version();
}

int
server_stop(struct server *srv)
{
	unsigned int running = 0;
	unsigned long long skipped;

	/*
	 * 0.9.75 aborts in MHD_stop_daemon while a connection is suspended:
	 * every request on the handler pool is resumed first, to a 503 if it
	 * was still queued (it never runs) or its handler still runs (the
	 * handler goes on; its reply is dropped).
	 */
	if (srv->pool != NULL) {
		pool_close(srv->pool, job_cancel);
		running = pool_abandon(srv->pool, job_abandon);
		if (running > 0)
			log_warn("stopping with %u blocking handlers still "
			         "running: their requests are cut",
			         running);
	}
	for (size_t i = 0; i < CHECK_MAX; i++)
		if (srv->probes[i].fd >= 0)
			close(srv->probes[i].fd);
	/* The resumed ones get their 503 from their worker, if it is quick. */
	if (srv->pool != NULL) {
		long long until = now_ms() + STOP_ANSWER_MS;

		while (metrics_in_flight() > 0 && now_ms() < until) {
			struct timespec tick = {0, 5 * 1000000L};

			nanosleep(&tick, NULL);
		}
	}
	MHD_stop_daemon(srv->daemon);
	if (srv->tls_daemon != NULL)
		MHD_stop_daemon(srv->tls_daemon);
	if (srv->tls_quiesced_fd != MHD_INVALID_SOCKET)
		close(srv->tls_quiesced_fd);
	free(srv->tls_priorities);
	skipped = atomic_load(&srv->probe_log_skipped);
	if (skipped > 0) /* the count no later access-log line will carry */
		log_warn("%llu failed probe answers since the last one "
		         "logged were not access-logged",
		         skipped);
	if (srv->quiesced_fd != MHD_INVALID_SOCKET)
		close(srv->quiesced_fd);
	pool_stop(srv->pool); /* NULL-safe; leaves running handlers be */
	free(srv);
	return running > 0 ? -1 : 0;
}
