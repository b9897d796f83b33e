/* SPDX-License-Identifier: MIT */
/*
 * builtin.c -- microd's own routes, joined with the service's at start: the
 * probes (src/healthz.c), /version, /metrics, and the test builds' hooks
 */
#include "builtin.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "checks.h"
#include "clock.h"
#include "db/db.h"
#include "healthz.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "number.h"
#include "otel.h"
#include "reply.h"
#include "router.h"
#include "runtime.h"
#include "server/server.h"
#include "state.h"
#include "tls.h"
#include "version.h"

static void
handle_version(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200,
	           json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", "microd",
	                     "version", MICROD_VERSION, "commit", MICROD_COMMIT,
	                     "libmicrohttpd", server_library_version(),
	                     "jansson", jansson_version_str()));
}

/* The database pool's gauges and counters, then its histograms and error
 * counters (db_pool_render_metrics). */
static void
render_db(struct db_pool *db, FILE *f)
{
	struct db_pool_stats st;

	db_pool_stats(db, &st);
	fprintf(f,
	        "# HELP microd_db_connections Connections to the database, "
	        "idle in the pool or used by a handler.\n"
	        "# TYPE microd_db_connections gauge\n"
	        "microd_db_connections{state=\"idle\"} %u\n"
	        "microd_db_connections{state=\"used\"} %u\n"
	        "# HELP microd_db_connections_max The pool's size "
	        "(--database-pool).\n"
	        "# TYPE microd_db_connections_max gauge\n"
	        "microd_db_connections_max %u\n"
	        "# HELP microd_db_acquire_timeouts_total Handlers that got no "
	        "connection: none free within the acquire timeout, or the "
	        "database down.\n"
	        "# TYPE microd_db_acquire_timeouts_total counter\n"
	        "microd_db_acquire_timeouts_total %llu\n"
	        "# HELP microd_db_reconnects_total Connections made to "
	        "replace a discarded one.\n"
	        "# TYPE microd_db_reconnects_total counter\n"
	        "microd_db_reconnects_total %llu\n",
	        st.idle, st.used, st.max, st.acquire_timeouts, st.reconnects);
	db_pool_render_metrics(db, f);
}

/* microd's own families past the request metrics: checks, the chain, the
 * database, TLS. */
static void
render_runtime(void *arg, FILE *f)
{
	const struct runtime *rt = arg;
	unsigned long long ok, failed;

	if (rt->checks != NULL)
		checks_render_metrics(rt->checks, f);
	if (rt->middleware != NULL)
		middleware_render_metrics(rt->middleware, f);
	if (rt->db != NULL)
		render_db(rt->db, f);
	if (rt->tls == NULL)
		return;
	tls_reloads(rt->tls, &ok, &failed);
	fprintf(f,
	        "# HELP microd_tls_certificate_expiry_timestamp_seconds When "
	        "the HTTPS certificate in use expires (notAfter).\n"
	        "# TYPE microd_tls_certificate_expiry_timestamp_seconds "
	        "gauge\n"
	        "microd_tls_certificate_expiry_timestamp_seconds %lld\n"
	        "# HELP microd_tls_reloads_total Reloads of the certificate "
	        "and key: ok replaced the pair, failed kept the old one.\n"
	        "# TYPE microd_tls_reloads_total counter\n"
	        "microd_tls_reloads_total{result=\"ok\"} %llu\n"
	        "microd_tls_reloads_total{result=\"failed\"} %llu\n",
	        tls_expiry(rt->tls), ok, failed);
}

static void
handle_metrics(const struct request *req, struct reply *rep)
{
	size_t len = 0;
	char *text = metrics_render(
	    &len, req->runtime != NULL ? render_runtime : NULL, req->runtime);

	reply_text(rep, 200, text, len,
	           "text/plain; version=0.0.4; charset=utf-8");
}

#if MICROD_TEST_HOOKS
/*
 * Test builds only (make builds build/hooks/microd for the suite): blocks the
 * worker thread that runs it for ?ms= milliseconds (at most 30 s), the
 * honest way to wedge one worker of the pool.
 */
static void
handle_test_block(const struct request *req, struct reply *rep)
{
	uintmax_t ms = 0;
	struct timespec ts;

	if (number_parse(request_query(req, "ms"), 30000, &ms) != 0) {
		reply_error(rep, 400, "ms must be 0 to 30000");
		return;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
	reply_json(rep, 200, json_pack("{s:I}", "blocked_ms", (json_int_t)ms));
}

/*
 * Test builds only: what the database layer will do for each statement
 * (otel_client_span), for a statement named test_statement that took
 * ?ms= milliseconds (at most 1000, default 1) and failed with ?sqlstate=
 * when given.
 */
static void
handle_test_statement(const struct request *req, struct reply *rep)
{
	const char *ms_arg = request_query(req, "ms");
	const char *sqlstate = request_query(req, "sqlstate");
	uintmax_t ms = 1;
	long long start = now_ns();

	if (ms_arg != NULL && number_parse(ms_arg, 1000, &ms) != 0) {
		reply_error(rep, 400, "ms must be 0 to 1000");
		return;
	}
	otel_client_span(req, "test_statement", start,
	                 start + (long long)ms * 1000000LL, sqlstate);
	reply_json(rep, 200, json_pack("{s:s?}", "sqlstate", sqlstate));
}

/*
 * Test builds only: what a handler sees of the trace context, and the
 * traceparent it would send on a request of its own.
 */
static void
handle_test_trace(const struct request *req, struct reply *rep)
{
	char out[TRACE_HEADER_LEN + 1], state[513];
	size_t n = request_tracestate(req, state, sizeof(state));

	trace_outbound(req->trace, out);
	reply_json(rep, 200,
	           json_pack("{s:s?,s:s?,s:s}", "trace_id",
	                     req->trace != NULL ? req->trace->trace_id : NULL,
	                     "tracestate", n > 0 ? state : NULL, "outbound",
	                     out));
}

/*
 * Test builds only: polls request_gone_fd for up to ?ms= milliseconds (at
 * most 30 s) and answers whether it turned readable. The client that left
 * gets no answer, so each step is logged too, with the request id and the
 * monotonic clock: "test gone: ID watching at NS", then "ID fired at NS" or
 * "ID not fired" ("ID not watched" without a descriptor).
 */
static void
handle_test_gone(const struct request *req, struct reply *rep)
{
	uintmax_t ms = 0;
	struct pollfd p = {.fd = request_gone_fd(req), .events = POLLIN};
	long long until, left;
	int n = 0;

	if (number_parse(request_query(req, "ms"), 30000, &ms) != 0) {
		reply_error(rep, 400, "ms must be 0 to 30000");
		return;
	}
	if (p.fd < 0) {
		log_info("test gone: %s not watched", req->id);
		reply_json(rep, 200, json_pack("{s:b}", "watched", 0));
		return;
	}
	log_info("test gone: %s watching at %lld", req->id, now_ns());
	until = now_ms() + (long long)ms;
	do {
		left = until - now_ms();
		n = poll(&p, 1, left > 0 ? (int)left : 0);
	} while (n < 0 && errno == EINTR);
	if (n > 0 && (p.revents & POLLIN))
		log_info("test gone: %s fired at %lld", req->id, now_ns());
	else
		log_info("test gone: %s not fired", req->id);
	reply_json(rep, 200,
	           json_pack("{s:b, s:b}", "watched", 1, "gone",
	                     n > 0 && (p.revents & POLLIN)));
}

/*
 * Test builds only: a reply with whatever status ?code= names (0 to 999),
 * with a body unless ?body=no, so the suite can see what microd does with a
 * handler that answers a status no response can have.
 */
static void
handle_test_status(const struct request *req, struct reply *rep)
{
	uintmax_t code = 0;
	const char *body = request_query(req, "body");

	if (number_parse(request_param(req, "code"), 999, &code) != 0) {
		reply_error(rep, 400, "code must be 0 to 999");
		return;
	}
	if (body == NULL || strcmp(body, "no") != 0)
		reply_json(rep, (unsigned int)code, json_object());
	else
		rep->status = (unsigned int)code;
}
#endif

const struct route builtin_routes[] = {
    {"GET", "/health", handle_health, ROUTE_PROBE, 0},
    {"GET", "/ready", handle_ready, ROUTE_PROBE, 0},
    {"GET", "/livez", handle_livez, ROUTE_PROBE, 0},
    {"GET", "/readyz", handle_readyz, ROUTE_PROBE, 0},
    {"GET", "/livez/{name}", handle_livez_one, ROUTE_PROBE | ROUTE_PROBE_NAMED,
     0},
    {"GET", "/readyz/{name}", handle_readyz_one,
     ROUTE_PROBE | ROUTE_PROBE_NAMED, 0},
    {"GET", "/version", handle_version, 0, 0},
    {"GET", "/metrics", handle_metrics, ROUTE_METRICS, 0},
#if MICROD_TEST_HOOKS
    {"GET", "/test/block", handle_test_block, 0, 0},
    {"GET", "/test/status/{code}", handle_test_status, 0, 0},
    {"GET", "/test/trace", handle_test_trace, 0, 0},
    {"GET", "/test/statement", handle_test_statement, ROUTE_BLOCKING, 0},
    {"GET", "/test/gone", handle_test_gone, ROUTE_BLOCKING, 0},
    {"GET", "/test/gone-io", handle_test_gone, 0, 0},
#endif
};

const size_t builtin_routes_count =
    sizeof(builtin_routes) / sizeof(builtin_routes[0]);
