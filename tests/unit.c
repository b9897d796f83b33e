/* SPDX-License-Identifier: MIT */
/*
 * unit.c -- the pure modules without a server: router, config, reply, the
 * request policy, the number parser, the rate limits and the client's key,
 * the outbound client's status line, the environment parsing of socket
 * activation and sd_notify, and request bodies against their shapes
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "activation.h"
#include "app/app.h"
#include "app/handlers.h"
#include "app/sql.h"
#include "auth.h"
#include "builtin.h"
#include "check.h"
#include "clock.h"
#include "config.h"
#include "db/db.h"
#include "dispatch.h"
#include "encode.h"
#include "export.h"
#include "health.h"
#include "healthz.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "notify.h"
#include "number.h"
#include "otel.h"
#include "otelconf.h"
#include "outbound.h"
#include "policy.h"
#include "pool.h"
#include "ratelimit.h"
#include "reply.h"
#include "resources.h"
#include "router.h"
#include "runtime.h"
#include "status.h"
#include "trace.h"
#include "validate.h"

static void
h_any(const struct request *req, struct reply *rep)
{
	(void)req;
	(void)rep;
}

/* A table for the matching rules alone; rows are told apart by position. */
static const struct route match_table[] = {
    {"GET", "/users/{id}", h_any, 0, 0},               /* 0 */
    {"DELETE", "/users/{id}", h_any, 0, 0},            /* 1 */
    {"GET", "/users/me", h_any, 0, 0},                 /* 2 */
    {"GET", "/users/{id}/keys/{key}", h_any, 0, 0},    /* 3 */
    {"GET", "/users/me/keys/{key}", h_any, 0, 0},      /* 4 */
    {"GET", "/{a}/x", h_any, 0, 0},                    /* 5 */
    {"GET", "/users/{id}/x", h_any, 0, 0},             /* 6 */
    {"GET", "/", h_any, 0, 0},                         /* 7 */
    {"GET", "/files/{name}", h_any, ROUTE_EXAMPLE, 0}, /* 8 */
    {"HEAD", "/users/me", h_any, 0, 0},                /* 9 */
};
#define N_MATCH (sizeof(match_table) / sizeof(match_table[0]))

static const struct match_case {
	const char *method, *raw;
	unsigned int hide;
	enum route_match want;
	int row;                   /* -1: no row */
	const char *param, *value; /* one parameter to look at, or NULL */
	const char *allow;         /* ROUTE_BAD_METHOD */
	const char *detail;        /* ROUTE_BAD_PARAM */
} match_cases[] = {
    {"GET", "/users/42", 0, ROUTE_FOUND, 0, "id", "42", NULL, NULL},
    {"DELETE", "/users/42", 0, ROUTE_FOUND, 1, "id", "42", NULL, NULL},
    /* a literal segment beats a parameter */
    {"GET", "/users/me", 0, ROUTE_FOUND, 2, NULL, NULL, NULL, NULL},
    /* ... among the rows for the method: DELETE has only {id} */
    {"DELETE", "/users/me", 0, ROUTE_FOUND, 1, "id", "me", NULL, NULL},
    /* HEAD: its own row beats GET's on a tie */
    {"HEAD", "/users/me", 0, ROUTE_FOUND, 9, NULL, NULL, NULL, NULL},
    {"HEAD", "/users/7", 0, ROUTE_FOUND, 0, "id", "7", NULL, NULL},
    {"GET", "/users/me/keys/k1", 0, ROUTE_FOUND, 4, "key", "k1", NULL, NULL},
    {"GET", "/users/u/keys/k1", 0, ROUTE_FOUND, 3, "id", "u", NULL, NULL},
    {"GET", "/users/u/keys/k1", 0, ROUTE_FOUND, 3, "key", "k1", NULL, NULL},
    /* the first segment where they differ decides: /users beats {a} */
    {"GET", "/users/x", 0, ROUTE_FOUND, 0, "id", "x", NULL, NULL},
    {"GET", "/users/u/x", 0, ROUTE_FOUND, 6, "id", "u", NULL, NULL},
    {"GET", "/other/x", 0, ROUTE_FOUND, 5, "a", "other", NULL, NULL},
    /* each segment is decoded after the split */
    {"GET", "/users/a%20b", 0, ROUTE_FOUND, 0, "id", "a b", NULL, NULL},
    {"GET", "/users/%6De", 0, ROUTE_FOUND, 2, NULL, NULL, NULL, NULL},
    {"GET", "/us%65rs/42", 0, ROUTE_FOUND, 0, "id", "42", NULL, NULL},
    {"GET", "/users/caf%C3%A9", 0, ROUTE_FOUND, 0, "id", "caf\xc3\xa9", NULL,
     NULL},
    /* '+' is not a space in a path */
    {"GET", "/users/a+b", 0, ROUTE_FOUND, 0, "id", "a+b", NULL, NULL},
    /* an encoded slash is data, and not allowed in a parameter */
    {"GET", "/users/a%2Fb", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "an encoded '/' (%2F) is not allowed in it"},
    {"GET", "/users/a%2fb", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "an encoded '/' (%2F) is not allowed in it"},
    {"GET", "/users/%00", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "a control byte is not allowed in it"},
    {"GET", "/users/a%0Ab", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "a control byte is not allowed in it"},
    {"GET", "/users/a%7Fb", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "a control byte is not allowed in it"},
    {"GET", "/users/a%zz", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "malformed percent-encoding"},
    {"GET", "/users/a%4", 0, ROUTE_BAD_PARAM, 0, NULL, NULL, NULL,
     "malformed percent-encoding"},
    /* ... and never a separator: no two-segment route takes it */
    {"GET", "/users%2F42", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    /* trailing and doubled slashes are other paths */
    {"GET", "/users/42/", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "/users//42", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "/users/", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "//x", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "/", 0, ROUTE_FOUND, 7, NULL, NULL, NULL, NULL},
    /* "" is an absolute-form target with no path: "/" */
    {"GET", "", 0, ROUTE_FOUND, 7, NULL, NULL, NULL, NULL},
    /* anything else that is not a path is no route, "/" least of all */
    {"GET", "*", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "users/42", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"GET", "x/y/z", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    /* paths and methods are case-sensitive */
    {"GET", "/USERS/42", 0, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL, NULL},
    {"get", "/users/42", 0, ROUTE_BAD_METHOD, 0, NULL, NULL,
     "GET, HEAD, DELETE", NULL},
    /* Allow: every method of every template that matches the path */
    {"PUT", "/users/me", 0, ROUTE_BAD_METHOD, 2, NULL, NULL,
     "GET, HEAD, DELETE", NULL},
    {"POST", "/", 0, ROUTE_BAD_METHOD, 7, NULL, NULL, "GET, HEAD", NULL},
    /* hidden rows are not there */
    {"GET", "/files/f", 0, ROUTE_FOUND, 8, "name", "f", NULL, NULL},
    {"GET", "/files/f", ROUTE_EXAMPLE, ROUTE_NOT_FOUND, -1, NULL, NULL, NULL,
     NULL},
};

static void
test_router_match(void)
{
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]);
	     i++) {
		const struct match_case *c = &match_cases[i];
		struct route_result res;
		char buf[128];
		enum route_match m =
		    router_match(match_table, N_MATCH, c->method, c->raw,
		                 c->hide, buf, sizeof(buf), &res);
		int row =
		    res.route != NULL ? (int)(res.route - match_table) : -1;
		struct request req = {.params = &res.params};

		ok(m == c->want && res.match == m && row == c->row,
		   "%s '%s' -> match %d row %d", c->method, c->raw, (int)m,
		   row);
		if (m != c->want || row != c->row)
			printf("#   want match %d row %d\n", (int)c->want,
			       c->row);
		if (c->param != NULL)
			is_str(request_param(&req, c->param), c->value,
			       "  {%s} = '%s'", c->param, c->value);
		if (c->allow != NULL)
			is_str(res.allow, c->allow, "  Allow: %s", c->allow);
		if (c->detail != NULL)
			is_str(res.detail, c->detail, "  %s", c->detail);
	}
}

static void
test_router_params(void)
{
	struct route_result res;
	struct request req = {.params = &res.params};
	char buf[64], small[4];

	is(router_match(match_table, N_MATCH, "GET", "/users/u%2Dv/keys/%41", 0,
	                buf, sizeof(buf), &res),
	   ROUTE_FOUND, "two parameters");
	is(res.params.n, 2, "both taken");
	is_str(request_param(&req, "id"), "u-v", "{id} decoded");
	is_str(request_param(&req, "key"), "A", "{key} decoded");
	ok(request_param(&req, "ke") == NULL && request_param(&req, "") == NULL,
	   "no prefix of a name matches");
	req.params = NULL;
	ok(request_param(&req, "id") == NULL, "no params: NULL");
	/* The documented bound: strlen(raw) + REQUEST_PARAMS_MAX. */
	is(router_match(match_table, N_MATCH, "GET", "/users/abcd", 0, small,
	                sizeof(small), &res),
	   ROUTE_BAD_PARAM, "a buffer too small is refused, not overrun");
}

static const struct route bad_tables[][2] = {
    {{"GET", "users", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{1d}", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{}", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/x{id}", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{id}/{id}", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/a%2Fb", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{id}", NULL, 0, 0}, {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{id}", h_any, ROUTE_JSON_BODY | ROUTE_RAW_BODY, 0},
     {"GET", "/x", h_any, 0, 0}},
    {{"GET", "/u/{id}", h_any, 0, 0}, {"GET", "/u/{name}", h_any, 0, 0}},
    {{"", "/u", h_any, 0, 0}, {"GET", "/x", h_any, 0, 0}},
};

static const char *const bad_why[] = {
    "route 0 (GET users): the path must start with '/'",
    "route 0 (GET /u/{1d}): a parameter's name must be a letter or '_', "
    "then letters, digits or '_'",
    "route 0 (GET /u/{}): a parameter's name must be a letter or '_', then "
    "letters, digits or '_'",
    "route 0 (GET /u/x{id}): a '{' or '}' that is not a whole {name} "
    "segment",
    "route 0 (GET /u/{id}/{id}): two parameters have one name",
    "route 0 (GET /u/a%2Fb): a '%' in a literal segment (write it decoded)",
    "route 0 (GET /u/{id}): no handler",
    "route 0 (GET /u/{id}): both ROUTE_JSON_BODY and ROUTE_RAW_BODY",
    "route 1 (GET /u/{name}): another row has the same method and template",
    "route 0 ( /u): no method",
};

static void
test_router_check(void)
{
	char msg[256];

	ok(router_check(router_at(0), router_count(), 0, msg, sizeof(msg)) ==
	       NULL,
	   "microd's own table is well formed, example rows included");
	ok(router_check_served(0, 65536, msg, sizeof(msg)) == 0,
	   "the joined table as served, with a body budget of 65536");
	ok(router_check_served(ROUTE_EXAMPLE, 1000, msg, sizeof(msg)) == 0,
	   "a hidden row's body limit may pass the budget");
	ok(router_check_served(0, 1000, msg, sizeof(msg)) == -1 &&
	       strcmp(msg, "POST /count takes bodies up to 4096 bytes, "
	                   "more than the body budget of 1000 bytes: raise "
	                   "--body-budget") == 0,
	   "a served row's body limit past the budget: refused (%s)", msg);
	ok(router_check(match_table, N_MATCH, 0, msg, sizeof(msg)) == NULL,
	   "the test table is too");
	{
		static const struct route hidden[] = {
		    {"GET", "/status/{code}", h_any, ROUTE_EXAMPLE, 0},
		    {"GET", "/status/{id}", h_any, 0, 0},
		};
		static const struct route many[] = {
		    {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", h_any, 0, 0},
		    {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h_any, 0,
		     0},
		};
		static char t1[400], t2[400];
		struct route longer[2] = {{"GET", t1, h_any, 0, 0},
		                          {"GET", t2, h_any, 0, 0}};

		ok(router_check(hidden, 2, ROUTE_EXAMPLE, msg, sizeof(msg)) ==
		       NULL,
		   "a hidden row does not collide with a served one");
		is_str(router_check(hidden, 2, 0, msg, sizeof(msg)),
		       "route 1 (GET /status/{id}): another row has the same "
		       "method and template",
		       "... but does once it is served");
		is_str(
		    router_check(many, 2, 0, msg, sizeof(msg)),
		    "route 1 (GET /{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}): more "
		    "parameters than REQUEST_PARAMS_MAX",
		    "8 parameters are fine, a 9th is refused");
		/* 40 segments of "/aaaaaaaaa", 400 bytes. */
		for (size_t k = 0; k < sizeof(t1) - 1; k++)
			t1[k] = k % 10 == 0 ? '/' : 'a';
		memcpy(t2, t1, sizeof(t1));
		t2[398] = 'b';
		ok(router_check(longer, 2, 0, msg, sizeof(msg)) == NULL,
		   "long templates that differ at their end are two");
		t2[398] = 'a';
		ok(router_check(longer, 2, 0, msg, sizeof(msg)) != NULL,
		   "... and the same ones are one");
	}
	for (size_t i = 0; i < sizeof(bad_tables) / sizeof(bad_tables[0]);
	     i++) {
		const char *why =
		    router_check(bad_tables[i], 2, 0, msg, sizeof(msg));

		is_str(why, bad_why[i], "router_check: %s", bad_why[i]);
	}
}

static void
test_router(void)
{
	struct route_result res;
	struct request req = {.method = "PUT", .path = "/health"};
	struct reply rep = {0};
	char buf[64];

	is(router_find("GET", "/health", 0, buf, sizeof(buf), &res),
	   ROUTE_FOUND, "GET /health");
	ok(res.route->handler == handle_health, "-> handle_health");
	is(router_find("HEAD", "/health", 0, buf, sizeof(buf), &res),
	   ROUTE_FOUND, "HEAD is served by the GET route");
	ok(res.route->handler == handle_health, "-> handle_health");
	is(router_find("POST", "/echo", 0, buf, sizeof(buf), &res), ROUTE_FOUND,
	   "POST /echo");
	ok((res.route->flags & ROUTE_JSON_BODY) != 0,
	   "/echo takes a JSON body");
	is(router_find("HEAD", "/echo", 0, buf, sizeof(buf), &res),
	   ROUTE_BAD_METHOD, "HEAD /echo: no GET route to stand in");
	ok(res.route != NULL && strcmp(res.route->path, "/echo") == 0,
	   "a wrong method still names the path's route (for metrics)");
	is(router_find("GET", "/health/", 0, buf, sizeof(buf), &res),
	   ROUTE_NOT_FOUND, "a trailing slash is another path");
	ok(res.route == NULL, "ROUTE_NOT_FOUND names no route");
	is(router_find("GET", "/status/404", ROUTE_EXAMPLE, buf, sizeof(buf),
	               &res),
	   ROUTE_NOT_FOUND, "the example routes are hidden by their flag");
	is(router_find("GET", "/status/404", 0, buf, sizeof(buf), &res),
	   ROUTE_FOUND, "... and there without it");
	ok((res.route->flags & ROUTE_EXAMPLE) != 0, "/status is an example");
	is(router_find("GET", "/delay/1", 0, buf, sizeof(buf), &res),
	   ROUTE_FOUND, "GET /delay/{ms}");
	ok((res.route->flags & ROUTE_BLOCKING) != 0,
	   "/delay runs on the handler pool");
	{
		static const char *const notes[][2] = {
		    {"POST", "/notes"},     {"GET", "/notes"},
		    {"GET", "/notes/1"},    {"PATCH", "/notes/1"},
		    {"DELETE", "/notes/1"},
		};

		for (size_t i = 0; i < sizeof(notes) / sizeof(notes[0]); i++) {
			is(router_find(notes[i][0], notes[i][1], 0, buf,
			               sizeof(buf), &res),
			   ROUTE_FOUND, "%s %s", notes[i][0], notes[i][1]);
			ok(res.route->flags & ROUTE_BLOCKING &&
			       res.route->flags & ROUTE_EXAMPLE,
			   "  an example on the handler pool (the database)");
		}
	}
	router_find("PATCH", "/notes/1", 0, buf, sizeof(buf), &res);
	ok((res.route->flags & ROUTE_JSON_BODY) && res.route->max_body == 65536,
	   "PATCH /notes/{id} takes a JSON body of at most 65536 bytes");

	router_find("PUT", "/health", 0, buf, sizeof(buf), &res);
	router_reply_unmatched(&res, &req, &rep);
	is(rep.status, 405, "bad method -> 405");
	is_str(rep.allow, "GET, HEAD", "Allow lists GET and HEAD");
	ok(rep.problem, "405 is problem details");
	reply_release(&rep);
	memset(&rep, 0, sizeof(rep));
	req.path = "/nowhere";
	router_find("PUT", "/nowhere", 0, buf, sizeof(buf), &res);
	router_reply_unmatched(&res, &req, &rep);
	is(rep.status, 404, "no route -> 404");
	is_str(json_string_value(json_object_get(rep.body, "detail")),
	       "no route for PUT /nowhere", "404 detail");
	is_str(rep.allow, "", "404 has no Allow");
	reply_release(&rep);
	memset(&rep, 0, sizeof(rep));
	router_find("GET", "/status/a%2Fb", 0, buf, sizeof(buf), &res);
	router_reply_unmatched(&res, &req, &rep);
	is(rep.status, 400, "a bad parameter -> 400");
	is_str(json_string_value(json_object_get(rep.body, "detail")),
	       "path parameter code: an encoded '/' (%2F) is not allowed in it",
	       "the 400 names the parameter and the rule");
	reply_release(&rep);
	test_router_match();
	test_router_params();
	test_router_check();
}

/* Which Content-Type a ROUTE_JSON_BODY route takes. */
static void
test_dispatch_is_json(void)
{
	static const struct {
		const char *type;
		int json;
	} rows[] = {
	    {"application/json", 1},
	    {"Application/JSON; charset=utf-8", 1},
	    {"application/json ;charset=utf-8", 1},
	    {"application/merge-patch+json", 1},
	    {"application/problem+json; x=y", 1},
	    {"application/+json", 0},
	    {"application/jsonx", 0},
	    {"application/json+xml", 0},
	    {"text/json", 0},
	    {"application/", 0},
	    {"", 0},
	};

	ok(!dispatch_is_json(NULL), "no Content-Type is not JSON");
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		is(dispatch_is_json(rows[i].type), rows[i].json,
		   "Content-Type %s: %s", rows[i].type,
		   rows[i].json ? "JSON" : "not JSON");
}

static const struct target_spec {
	const char *spec;
	const char *why; /* NULL: accepted */
	const char *host;
	const char *path;
	int kind;
	unsigned int port;
} target_specs[] = {
    {"db=tcp://127.0.0.1:5432", NULL, "127.0.0.1", "", HEALTH_TCP, 5432},
    {"cache=tcp://[::1]:6379", NULL, "::1", "", HEALTH_TCP, 6379},
    {"api=http://localhost:8080/healthz?x=1", NULL, "localhost", "/healthz?x=1",
     HEALTH_HTTP, 8080},
    {"a_b-1=http://10.0.0.1:80", NULL, "10.0.0.1", "/", HEALTH_HTTP, 80},
    {"db=udp://127.0.0.1:53", "the scheme must be tcp:// or http://", NULL,
     NULL, 0, 0},
    {"db=https://h:443/", "the scheme must be tcp:// or http://", NULL, NULL, 0,
     0},
    {"db=tcp://127.0.0.1", "no :PORT", NULL, NULL, 0, 0},
    {"db=tcp://127.0.0.1:0", "the port must be 1 to 65535", NULL, NULL, 0, 0},
    {"db=tcp://127.0.0.1:65536", "the port must be 1 to 65535", NULL, NULL, 0,
     0},
    {"db=tcp://127.0.0.1:54x", "the port must be 1 to 65535", NULL, NULL, 0, 0},
    {"db=tcp://:5432", "no host, or one longer than 253 bytes", NULL, NULL, 0,
     0},
    {"db=tcp://::1:5432", "an IPv6 address needs [ADDR]:PORT", NULL, NULL, 0,
     0},
    {"db=tcp://h:1/x", "a tcp:// check takes no path", NULL, NULL, 0, 0},
    {"db=tcp://h#x:1",
     "a host holds letters, digits, '.', '-', '_' or an address", NULL, NULL, 0,
     0},
    {"db=tcp://h]:1",
     "a host holds letters, digits, '.', '-', '_' or an address", NULL, NULL, 0,
     0},
    {"db=tcp://[x]:1", "an IPv6 address holds hex digits, ':' and '.'", NULL,
     NULL, 0, 0},
    {"db=tcp://[fe80::1%lo]:1", "an IPv6 address holds hex digits, ':' and '.'",
     NULL, NULL, 0, 0},
    {"db=tcp://[10.0.0.1]:1", "an IPv6 address holds hex digits, ':' and '.'",
     NULL, NULL, 0, 0},
    {"db=tcp://db_1.svc-2:1", NULL, "db_1.svc-2", "", HEALTH_TCP, 1},
    {"db=http://h:1/a b",
     "a space or control byte in the path "
     "(percent-encode it)",
     NULL, NULL, 0, 0},
    {"DB=tcp://h:1", "the name must be 1 to 32 of a-z, 0-9, '_', '-'", NULL,
     NULL, 0, 0},
    {"=tcp://h:1", "the name must be 1 to 32 of a-z, 0-9, '_', '-'", NULL, NULL,
     0, 0},
    {"tcp://h:1", "expected NAME=tcp://HOST:PORT or NAME=http://HOST:PORT/PATH",
     NULL, NULL, 0, 0},
    {"db", "expected NAME=tcp://HOST:PORT or NAME=http://HOST:PORT/PATH", NULL,
     NULL, 0, 0},
    {"abcdefghijabcdefghijabcdefghijabc=tcp://h:1",
     "the name must be 1 to 32 of a-z, 0-9, '_', '-'", NULL, NULL, 0, 0},
};

/* traceparent values from the Trace Context Level 1 recommendation and
 * around its rules; NULL trace id: the whole header is invalid. */
#define TP_ID "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_PARENT "00f067aa0ba902b7"
static const struct traceparent_case {
	const char *value, *why;
	const char *trace_id, *span_id, *flags;
} traceparents[] = {
    {"00-" TP_ID "-" TP_PARENT "-01", "the recommendation's example", TP_ID,
     TP_PARENT, "01"},
    {"00-" TP_ID "-" TP_PARENT "-00", "not sampled", TP_ID, TP_PARENT, "00"},
    {"01-" TP_ID "-" TP_PARENT "-01", "a later version, 55 characters", TP_ID,
     TP_PARENT, "01"},
    {"cc-" TP_ID "-" TP_PARENT "-01-what-the-future-will-be-like",
     "a later version with more after a '-'", TP_ID, TP_PARENT, "01"},
    {"cc-" TP_ID "-" TP_PARENT "-01.what-the-future-will-be-like",
     "a later version with more, not after a '-'", NULL, NULL, NULL},
    {"00-" TP_ID "-" TP_PARENT "-01-", "version 00 longer than 55", NULL, NULL,
     NULL},
    {"ff-" TP_ID "-" TP_PARENT "-01", "version ff", NULL, NULL, NULL},
    {"00-00000000000000000000000000000000-" TP_PARENT "-01",
     "an all-zero trace-id", NULL, NULL, NULL},
    {"00-" TP_ID "-0000000000000000-01", "an all-zero parent-id", NULL, NULL,
     NULL},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_PARENT "-01",
     "uppercase hex in the trace-id", NULL, NULL, NULL},
    {"00-" TP_ID "-00F067AA0BA902B7-01", "uppercase hex in the parent-id", NULL,
     NULL, NULL},
    {"0g-" TP_ID "-" TP_PARENT "-01", "a version that is not hex", NULL, NULL,
     NULL},
    {"00-" TP_ID "-" TP_PARENT "-0x", "flags that are not hex", NULL, NULL,
     NULL},
    {"00_" TP_ID "-" TP_PARENT "-01", "a delimiter other than '-'", NULL, NULL,
     NULL},
    {"00-" TP_ID "-" TP_PARENT "-1", "54 characters", NULL, NULL, NULL},
    {"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
     "a field boundary moved", NULL, NULL, NULL},
    {"", "empty", NULL, NULL, NULL},
    {" \t00-" TP_ID "-" TP_PARENT "-01", "spaces and a tab before it", TP_ID,
     TP_PARENT, "01"},
    {"00-" TP_ID "-" TP_PARENT "-01 \t", "a space and a tab after it", TP_ID,
     TP_PARENT, "01"},
    {"00-" TP_ID "-" TP_PARENT " -01", "a space inside it", NULL, NULL, NULL},
    {"  ", "only spaces", NULL, NULL, NULL},
};

static void
test_trace(void)
{
	struct trace t;

	for (size_t i = 0; i < sizeof(traceparents) / sizeof(traceparents[0]);
	     i++) {
		const struct traceparent_case *c = &traceparents[i];
		int r = trace_parse(c->value, &t);

		if (c->trace_id == NULL) {
			ok(r == -1 && t.trace_id[0] == '\0',
			   "traceparent %s: ignored", c->why);
			continue;
		}
		ok(r == 0 && strcmp(t.trace_id, c->trace_id) == 0 &&
		       strcmp(t.span_id, c->span_id) == 0 &&
		       strcmp(t.flags, c->flags) == 0,
		   "traceparent %s: %s/%s/%s", c->why, t.trace_id, t.span_id,
		   t.flags);
	}
	ok(trace_parse(NULL, &t) == -1, "no traceparent: none");
	{
		static const struct {
			const char *in, *out;
		} flags[] = {{"01", "01"}, {"00", "00"}, {"09", "01"},
		             {"02", "00"}, {"ff", "01"}, {"fe", "00"}};
		char out[TRACE_HEADER_LEN + 1], other[TRACE_HEADER_LEN + 1];

		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			char v[64];

			snprintf(v, sizeof(v), "01-%s-%s-%s", TP_ID, TP_PARENT,
			         flags[i].in);
			trace_parse(v, &t);
			trace_outbound(&t, out);
			ok(strlen(out) == TRACE_HEADER_LEN &&
			       strncmp(out, "00-" TP_ID "-", 36) == 0 &&
			       strncmp(out + 36, TP_PARENT, 16) != 0 &&
			       strcmp(out + 53, flags[i].out) == 0 &&
			       trace_parse(out, &t) == 0,
			   "trace_outbound of flags %s: the trace, a new span, "
			   "flags %s: %s",
			   flags[i].in, flags[i].out, out);
		}
		trace_outbound(NULL, out);
		trace_outbound(NULL, other);
		ok(trace_parse(out, &t) == 0 && strcmp(t.flags, "00") == 0 &&
		       strncmp(out, other, 35) != 0,
		   "trace_outbound without a parent: a new valid trace each "
		   "time, flags 00: %s",
		   out);
	}
}

/* The environment otelconf_parse sees: NAME=value strings, NULL-ended. */
static const char *const *otel_env;

static const char *
otel_env_get(const char *name)
{
	size_t n = strlen(name);

	for (const char *const *e = otel_env; *e != NULL; e++)
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	return NULL;
}

#define OTEL_ENV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define OTEL_EP "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318"

static const struct otelconf_case {
	const char *const *env;
	const char *why;
	int rc;          /* otelconf_parse's */
	const char *got; /* rc 0: a field as "name=value"; else err */
} otelconf_cases[] = {
    {OTEL_ENV("HOME=/"), "no endpoint: off", 0, "enabled=0"},
    {OTEL_ENV(OTEL_EP), "an endpoint: on", 0, "enabled=1"},
    {OTEL_ENV(OTEL_EP), "the base endpoint gets /v1/traces", 0,
     "url=http://127.0.0.1:4318/v1/traces"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_ENDPOINT=http://h:4318/base/"),
     "a base endpoint's trailing slash is not doubled", 0,
     "path=/base/v1/traces"},
    {OTEL_ENV(OTEL_EP,
              "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://[::1]:9/x/y"),
     "the traces endpoint is used as it is, over the base one", 0, "path=/x/y"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://[::1]:9/x/y"),
     "an IPv6 host", 0, "host=::1"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://c.example"),
     "https without a port: 443", 0, "port=443"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_ENDPOINT=http://c"),
     "http without a port: 80", 0, "port=80"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_ENDPOINT=ftp://c"), "not http(s): refused",
     -1,
     "OTEL_EXPORTER_OTLP_ENDPOINT=ftp://c: not an http:// or https:// URL "
     "(host, optional port and path)"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_ENDPOINT=http://c:99999"),
     "a port past 65535: refused", -1,
     "OTEL_EXPORTER_OTLP_ENDPOINT=http://c:99999: not an http:// or "
     "https:// URL (host, optional port and path)"},
    {OTEL_ENV(OTEL_EP, "OTEL_SDK_DISABLED=true"), "OTEL_SDK_DISABLED=true: off",
     0, "enabled=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_SDK_DISABLED=TRUE"),
     "OTEL_SDK_DISABLED is case-insensitive", 0, "enabled=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_SDK_DISABLED=false"), "OTEL_SDK_DISABLED=false", 0,
     "enabled=1"},
    {OTEL_ENV(OTEL_EP), "the service name's default", 0, "service_name=microd"},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=service.name=a"),
     "service.name from OTEL_RESOURCE_ATTRIBUTES", 0, "service_name=a"},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=service.name=a",
              "OTEL_SERVICE_NAME=b"),
     "OTEL_SERVICE_NAME wins over it", 0, "service_name=b"},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=k=v%20w, k2 = x "),
     "resource attributes: percent-decoded, spaces around dropped", 0,
     "resource=k=v w;k2=x;"},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=k=v,broken"),
     "a member without '=': the whole list dropped", 0, "resource="},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=k=v,broken"),
     "... with a warning", 0,
     "warnings=OTEL_RESOURCE_ATTRIBUTES=k=v,broken is not valid: none of "
     "it used\n"},
    {OTEL_ENV(OTEL_EP, "OTEL_RESOURCE_ATTRIBUTES=k=%zz"),
     "a bad percent-escape: dropped", 0, "resource="},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_HEADERS=api-key=s%3Dx,b=c"),
     "headers", 0, "headers=api-key=s=x;b=c;"},
    {OTEL_ENV(OTEL_EP), "the sampler's default", 0,
     "sampler=parentbased_always_on"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=traceidratio",
              "OTEL_TRACES_SAMPLER_ARG=0.25"),
     "traceidratio 0.25", 0, "ratio=0.25"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=parentbased_traceidratio"),
     "a ratio's default: 1.0", 0, "ratio=1"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=traceidratio",
              "OTEL_TRACES_SAMPLER_ARG=1.5"),
     "a ratio past 1: 1.0 with a warning", 0,
     "warnings=OTEL_TRACES_SAMPLER_ARG=1.5 is not valid: 1.0 used\n"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=always_off"), "always_off", 0,
     "sampler=always_off"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=jaeger_remote"),
     "an unknown sampler: the default, with a warning", 0,
     "warnings=OTEL_TRACES_SAMPLER=jaeger_remote is not valid: "
     "parentbased_always_on used\n"},
    {OTEL_ENV(OTEL_EP), "the batch defaults", 0,
     "bsp=5000/2048/512/30000/10000"},
    {OTEL_ENV(OTEL_EP, "OTEL_BSP_SCHEDULE_DELAY=100",
              "OTEL_BSP_MAX_QUEUE_SIZE=10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=5",
              "OTEL_BSP_EXPORT_TIMEOUT=2000", "OTEL_EXPORTER_OTLP_TIMEOUT=300"),
     "the batch settings", 0, "bsp=100/10/5/2000/300"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_TIMEOUT=300",
              "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=400"),
     "the traces timeout wins", 0, "bsp=5000/2048/512/30000/400"},
    {OTEL_ENV(OTEL_EP, "OTEL_BSP_MAX_QUEUE_SIZE=10"),
     "a batch past the queue: cut to it", 0, "bsp=5000/10/10/30000/10000"},
    {OTEL_ENV(OTEL_EP, "OTEL_BSP_SCHEDULE_DELAY=-1"),
     "a delay that is no number: the default, with a warning", 0,
     "warnings=OTEL_BSP_SCHEDULE_DELAY=-1 is not valid: 5000 used\n"},
    {OTEL_ENV(OTEL_EP), "no protocol: JSON", 0, "protobuf=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"), "http/json", 0,
     "protobuf=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
     "http/protobuf: JSON all the same, marked for its warning", 0,
     "protobuf=1"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "grpc: refused", -1,
     "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: microd exports OTLP over HTTP as "
     "JSON only: set http/json (or unset it); a collector's OTLP/HTTP "
     "receiver (port 4318) takes it"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc"),
     "grpc for traces: refused", -1,
     "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: microd exports OTLP over HTTP as "
     "JSON only: set http/json (or unset it); a collector's OTLP/HTTP "
     "receiver (port 4318) takes it"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
     "grpc without an endpoint: traces off, no refusal", 0, "enabled=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_SDK_DISABLED=true",
              "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
     "grpc with OTEL_SDK_DISABLED=true: off, no refusal", 0, "enabled=0"},
    {OTEL_ENV("OTEL_SDK_DISABLED=true", "OTEL_EXPORTER_OTLP_ENDPOINT=ftp://x"),
     "a bad endpoint with OTEL_SDK_DISABLED=true: off, no refusal", 0,
     "enabled=0"},
    {OTEL_ENV("OTEL_EXPORTER_OTLP_ENDPOINT=http://h:4318?x=1"),
     "a base endpoint with a query: refused", -1,
     "OTEL_EXPORTER_OTLP_ENDPOINT=http://h:4318?x=1: a base URL has no query "
     "or fragment (/v1/traces is added to it)"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_HEADERS=a=1",
              "OTEL_EXPORTER_OTLP_TRACES_HEADERS=b=2"),
     "the traces headers win", 0, "headers=b=2;"},
    {OTEL_ENV(OTEL_EP, "OTEL_BSP_MAX_QUEUE_SIZE=10"),
     "a batch past the queue: a warning naming what is used", 0,
     "warnings=OTEL_BSP_MAX_EXPORT_BATCH_SIZE=512 is not valid: 10 (the "
     "queue's size) used\n"},
    {OTEL_ENV(OTEL_EP, "OTEL_EXPORTER_OTLP_PROTOCOL=HTTP/JSON"),
     "a protocol in any case", 0, "protobuf=0"},
    {OTEL_ENV(OTEL_EP, "OTEL_TRACES_SAMPLER=TraceIdRatio",
              "OTEL_TRACES_SAMPLER_ARG=0.5"),
     "a sampler in any case", 0, "ratio=0.5"},
};

/* The field a case asks about, as "name=value". */
static void
otelconf_field(const struct otelconf *c, const char *want, char *out,
               size_t len)
{
	size_t n = strcspn(want, "=");
	size_t used = 0;

#define FIELD(name) (strncmp(want, name, n) == 0 && strlen(name) == n)
	if (FIELD("enabled"))
		snprintf(out, len, "enabled=%d", c->enabled);
	else if (FIELD("url"))
		snprintf(out, len, "url=%s", c->url);
	else if (FIELD("path"))
		snprintf(out, len, "path=%s", c->path);
	else if (FIELD("host"))
		snprintf(out, len, "host=%s", c->host);
	else if (FIELD("port"))
		snprintf(out, len, "port=%u", c->port);
	else if (FIELD("service_name"))
		snprintf(out, len, "service_name=%s", c->service_name);
	else if (FIELD("sampler"))
		snprintf(out, len, "sampler=%s",
		         otelconf_sampler_name(c->sampler));
	else if (FIELD("ratio"))
		snprintf(out, len, "ratio=%g", c->ratio);
	else if (FIELD("warnings"))
		snprintf(out, len, "warnings=%s", c->warnings);
	else if (FIELD("protobuf"))
		snprintf(out, len, "protobuf=%d", c->protobuf_asked);
	else if (FIELD("bsp"))
		snprintf(out, len, "bsp=%u/%u/%u/%u/%u", c->schedule_delay_ms,
		         c->max_queue, c->max_batch, c->export_timeout_ms,
		         c->otlp_timeout_ms);
	else if (FIELD("resource") || FIELD("headers")) {
		const struct otelconf_pair *p =
		    FIELD("resource") ? c->resource : c->headers;
		size_t np = FIELD("resource") ? c->n_resource : c->n_headers;

		used = (size_t)snprintf(out, len, "%.*s=", (int)n, want);
		for (size_t i = 0; i < np && used < len; i++)
			used +=
			    (size_t)snprintf(out + used, len - used, "%s=%s;",
			                     p[i].key, p[i].value);
	} else
		snprintf(out, len, "(no such field)");
#undef FIELD
}

static void
test_otelconf(void)
{
	for (size_t i = 0; i < sizeof(otelconf_cases) / sizeof(*otelconf_cases);
	     i++) {
		const struct otelconf_case *t = &otelconf_cases[i];
		struct otelconf c;
		char err[256], got[1200];
		int rc;

		otel_env = t->env;
		rc = otelconf_parse(&c, otel_env_get, err, sizeof(err));
		if (rc != 0)
			snprintf(got, sizeof(got), "%s", err);
		else
			otelconf_field(&c, t->got, got, sizeof(got));
		ok(rc == t->rc && strcmp(got, t->got) == 0, "otelconf: %s",
		   t->why);
		if (rc != t->rc || strcmp(got, t->got) != 0)
			diag("got %d '%s', want %d '%s'", rc, got, t->rc,
			     t->got);
	}
}

static void
test_otel_sample(void)
{
	static const char low[] = "0af7651916cd43dd0000000000000001";
	static const char high[] = "0af7651916cd43ddfffffffffffffff0";
	static const char mid[] = "0af7651916cd43dd7000000000000000";

	ok(otel_sample(OTELCONF_PARENTBASED_ALWAYS_ON, 1, NULL, low),
	   "parentbased_always_on: a root is sampled");
	ok(!otel_sample(OTELCONF_PARENTBASED_ALWAYS_ON, 1, "00", low),
	   "parentbased_always_on: an unsampled parent's child is not");
	ok(otel_sample(OTELCONF_PARENTBASED_ALWAYS_ON, 1, "01", low),
	   "parentbased_always_on: a sampled parent's child is");
	ok(otel_sample(OTELCONF_PARENTBASED_ALWAYS_OFF, 1, "01", low) &&
	       !otel_sample(OTELCONF_PARENTBASED_ALWAYS_OFF, 1, NULL, low),
	   "parentbased_always_off: the parent's say, else no");
	ok(otel_sample(OTELCONF_ALWAYS_ON, 1, "00", low),
	   "always_on: whatever the parent");
	ok(!otel_sample(OTELCONF_ALWAYS_OFF, 1, "01", low),
	   "always_off: whatever the parent");
	ok(otel_sample(OTELCONF_TRACEIDRATIO, 0.5, "00", low) &&
	       !otel_sample(OTELCONF_TRACEIDRATIO, 0.5, "01", high),
	   "traceidratio: the trace id's low 64 bits against the ratio, "
	   "whatever the parent");
	ok(otel_sample(OTELCONF_TRACEIDRATIO, 0.5, NULL, mid) &&
	       !otel_sample(OTELCONF_TRACEIDRATIO, 0.4, NULL, mid),
	   "traceidratio: 0x7000... is below 0.5 of 2^64, above 0.4");
	ok(!otel_sample(OTELCONF_TRACEIDRATIO, 0, NULL, low) &&
	       otel_sample(OTELCONF_TRACEIDRATIO, 1, NULL, high),
	   "traceidratio 0 keeps none, 1 all");
	ok(otel_sample(OTELCONF_PARENTBASED_TRACEIDRATIO, 0, "01", high) &&
	       !otel_sample(OTELCONF_PARENTBASED_TRACEIDRATIO, 0, NULL, low),
	   "parentbased_traceidratio: the parent's say, else the ratio");
}

/* A listening socket on 127.0.0.1, port 0: fd, and *port. */
static int
otel_listener(unsigned int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/*
 * Takes the exporter's next POST on l (within 5 s), reads it whole and
 * answers it with status. The number of spans it carried, or -1.
 */
static int
otel_answer(int l, int status)
{
	struct pollfd p = {.fd = l, .events = POLLIN};
	static char buf[65536];
	size_t have = 0;
	int c, spans = -1;
	char *body = NULL, reply[128];

	if (poll(&p, 1, 5000) != 1 || (c = accept(l, NULL, NULL)) < 0)
		return -1;
	for (;;) {
		struct pollfd q = {.fd = c, .events = POLLIN};
		char *cl;
		ssize_t r;

		buf[have] = '\0';
		body = strstr(buf, "\r\n\r\n");
		cl = strstr(buf, "Content-Length: ");
		if (body != NULL && cl != NULL &&
		    (size_t)(buf + have - body - 4) >=
		        strtoull(cl + 16, NULL, 10))
			break;
		if (have + 1 >= sizeof(buf) || poll(&q, 1, 5000) != 1 ||
		    (r = recv(c, buf + have, sizeof(buf) - have - 1, 0)) <= 0) {
			close(c);
			return -1;
		}
		have += (size_t)r;
	}
	for (char *at = body; (at = strstr(at, "\"spanId\"")) != NULL; at++)
		spans++;
	snprintf(reply, sizeof(reply),
	         "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", status);
	if (send(c, reply, strlen(reply), 0) < 0)
		spans = -1;
	close(c);
	return spans + 1;
}

/* A metric's value in the text exposition. */
static unsigned long long
metric_value(const char *name)
{
	size_t len;
	char *text = metrics_render(&len, NULL, NULL), line[128];
	char *at;
	unsigned long long v = 0;

	snprintf(line, sizeof(line), "\n%s ", name); /* not its # HELP */
	at = text != NULL ? strstr(text, line) : NULL;
	if (at != NULL)
		v = strtoull(at + strlen(line), NULL, 10);
	free(text);
	return v;
}

static void
test_otel_spans(void)
{
	struct otelconf c;
	struct otel *o;
	struct trace t;
	struct runtime rt = {0};
	struct request req = {.method = "GET", .path = "/x"};
	char err[256], out[TRACE_HEADER_LEN + 1], ep[96];
	unsigned long long dropped, exported, failed;
	unsigned int port = 0;
	int l = otel_listener(&port);
	const char *env[] = {ep, "OTEL_BSP_SCHEDULE_DELAY=3600000",
	                     "OTEL_BSP_MAX_QUEUE_SIZE=2", NULL};

	snprintf(ep, sizeof(ep),
	         "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%u", port);
	otel_env = env;
	ok(l >= 0 && otelconf_parse(&c, otel_env_get, err, sizeof(err)) == 0,
	   "otel: a receiver of the test's own, and its settings");
	o = l >= 0 ? otel_open(&c, err, sizeof(err)) : NULL;
	ok(o != NULL, "otel: an exporter starts");
	if (o == NULL)
		return;
	trace_parse("00-" TP_ID "-" TP_PARENT "-01", &t);
	ok(otel_server_begin(o, &t) == 1 && strcmp(t.trace_id, TP_ID) == 0 &&
	       strlen(t.self_id) == 16 && strcmp(t.self_id, TP_PARENT) != 0 &&
	       strcmp(t.self_flags, "01") == 0,
	   "otel_server_begin: a sampled parent: recorded, a span id of "
	   "its own");
	trace_outbound(&t, out);
	ok(strncmp(out + 36, t.self_id, 16) == 0 && strcmp(out + 53, "01") == 0,
	   "trace_outbound: the parent-id sent on is the request's span: "
	   "%s",
	   out);
	memset(&t, 0, sizeof(t));
	ok(otel_server_begin(o, &t) == 1 && strlen(t.trace_id) == 32 &&
	       strlen(t.self_id) == 16 && t.span_id[0] == '\0' &&
	       strcmp(t.flags, "01") == 0,
	   "otel_server_begin without a traceparent: a new trace, sampled");
	trace_parse("00-" TP_ID "-" TP_PARENT "-00", &t);
	ok(otel_server_begin(o, &t) == 0 && strcmp(t.self_flags, "00") == 0,
	   "otel_server_begin: an unsampled parent: not recorded");
	trace_outbound(&t, out);
	ok(strncmp(out + 36, t.self_id, 16) == 0 && strcmp(out + 53, "00") == 0,
	   "trace_outbound: an unrecorded span's id, flags 00: %s", out);
	memset(&t, 0, sizeof(t));
	ok(otel_server_begin(NULL, &t) == 0 && t.trace_id[0] == '\0' &&
	       t.self_id[0] == '\0',
	   "otel_server_begin with traces off: nothing");

	/* CLIENT spans: only for a recorded request, with traces on. A
	 * full queue (2) is a batch: the exporter takes it and POSTs it,
	 * and the test holds that POST unanswered. */
	rt.otel = o;
	req.runtime = &rt;
	trace_parse("00-" TP_ID "-" TP_PARENT "-01", &t);
	otel_server_begin(o, &t);
	req.trace = &t;
	dropped = metric_value("microd_otel_spans_dropped_total");
	exported = metric_value("microd_otel_spans_exported_total");
	failed = metric_value("microd_otel_export_failures_total");
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	otel_client_span(&req, "note_get", now_ns(), now_ns(), "23505");
	{
		struct pollfd p = {.fd = l, .events = POLLIN};

		ok(poll(&p, 1, 5000) == 1,
		   "otel: a full batch is sent at once, not after the "
		   "schedule delay");
	}
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	is(metric_value("microd_otel_spans_dropped_total"), dropped,
	   "otel_client_span: two more queued while the first two are sent");
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	is(metric_value("microd_otel_spans_dropped_total"), dropped + 1,
	   "otel_client_span: a fifth is dropped and counted, never waited "
	   "for");
	is(otel_answer(l, 200), 2, "otel: the first batch: 2 spans");
	is(otel_answer(l, 400), 2, "otel: the second batch: 2 spans");
	trace_parse("00-" TP_ID "-" TP_PARENT "-00", &t);
	otel_server_begin(o, &t);
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	req.trace = NULL;
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	req.runtime = NULL;
	otel_client_span(&req, "note_get", now_ns(), now_ns(), NULL);
	otel_client_span(NULL, "note_get", now_ns(), now_ns(), NULL);
	otel_close(o);
	is(metric_value("microd_otel_spans_exported_total"), exported + 2,
	   "otel: a 200 counts its spans exported");
	is(metric_value("microd_otel_export_failures_total"), failed + 1,
	   "otel: a 400 is a failure, not retried");
	is(metric_value("microd_otel_spans_dropped_total"), dropped + 1,
	   "otel_client_span: nothing for an unrecorded request, one without "
	   "a trace, or traces off");
	close(l);
}

/* One span for export_encode. */
static struct span *
span_make(const char *name, int kind, const char *parent)
{
	struct span *s = calloc(1, sizeof(*s) + strlen(name) + 8);

	if (s == NULL)
		return NULL;
	snprintf(s->trace_id, sizeof(s->trace_id), "%s", TP_ID);
	snprintf(s->span_id, sizeof(s->span_id), "%s", "00f067aa0ba902b7");
	snprintf(s->parent_id, sizeof(s->parent_id), "%s", parent);
	s->kind = kind;
	memcpy(s->text, name, strlen(name) + 1);
	s->name = s->text;
	s->start_unix_ns = 1700000000123456789LL;
	s->end_unix_ns = 1700000000223456789LL;
	s->attrs[0] =
	    (struct span_attr){"http.response.status_code", NULL, 503};
	s->attrs[1] = (struct span_attr){"url.path", "/x", 0};
	s->n_attrs = 2;
	return s;
}

static void
test_export(void)
{
	struct otelconf c;
	struct span *spans[2];
	char err[256], *text;
	size_t len = 0;
	json_t *doc, *span;
	static const char *const env[] = {
	    "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9",
	    "OTEL_SERVICE_NAME=svc", "OTEL_RESOURCE_ATTRIBUTES=env=prod", NULL};

	is(export_verdict(200), EXPORT_DONE, "export: 200 is done");
	is(export_verdict(204), EXPORT_DONE, "export: 204 is done");
	is(export_verdict(400), EXPORT_DROP, "export: 400 is never retried");
	is(export_verdict(404), EXPORT_DROP, "export: 404 is not retried");
	is(export_verdict(500), EXPORT_DROP, "export: 500 is not retried");
	for (int s = 502; s <= 504; s++)
		is(export_verdict(s), EXPORT_RETRY, "export: %d is retried", s);
	is(export_verdict(429), EXPORT_RETRY, "export: 429 is retried");
	is(export_verdict(-1), EXPORT_RETRY,
	   "export: no answer (a refused connection) is retried");
	is(export_backoff_ms(1, 2000, 7), 2000,
	   "backoff: Retry-After wins when given");
	is(export_backoff_ms(1, 0, 7), 507,
	   "backoff: Retry-After: 0 waits the backoff, not at once");
	is(export_backoff_ms(3, 1000, 7), 2007,
	   "backoff: a Retry-After shorter than the backoff waits the backoff");
	ok(export_backoff_ms(1, -1, 0) == 500 &&
	       export_backoff_ms(1, -1, 499) == 999,
	   "backoff: the first wait is in [0.5 s, 1 s)");
	ok(export_backoff_ms(3, -1, 0) == 2000 &&
	       export_backoff_ms(3, -1, 1999) == 3999,
	   "backoff: the third in [2 s, 4 s)");
	ok(export_backoff_ms(40, -1, 0) == 16000 &&
	       export_backoff_ms(40, -1, 0xffffffffu) < 32000,
	   "backoff: never past 32 s");
	is(outbound_retry_after("HTTP/1.1 503 x\r\nRetry-After: 3\r\n\r\n", 33),
	   3000, "Retry-After: 3 is 3000 ms");
	is(outbound_retry_after("HTTP/1.1 503 x\r\nretry-after:7 \r\n\r\n", 33),
	   7000, "Retry-After: the name in any case, spaces around");
	is(outbound_retry_after(
	       "HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 "
	       "GMT\r\n\r\n",
	       62),
	   -1, "Retry-After: an HTTP-date is not read (backoff then)");
	is(outbound_retry_after("HTTP/1.1 503 x\r\nX-Retry-After: 3\r\n\r\n",
	                        35),
	   -1, "Retry-After: another header's name ending so is not it");
	is(outbound_retry_after("HTTP/1.1 503 x\r\n\r\n", 18), -1,
	   "Retry-After: none");

	otel_env = env;
	otelconf_parse(&c, otel_env_get, err, sizeof(err));
	spans[0] = span_make("GET /x", SPAN_KIND_SERVER, "b7ad6b7169203331");
	spans[1] = span_make("note_get", SPAN_KIND_CLIENT, "");
	if (spans[0] == NULL || spans[1] == NULL)
		return;
	spans[0]->error = 1;
	/* A client's bytes: not UTF-8, a quote, a control character. */
	spans[1]->attrs[1].str = "/a\xff\"b\n";
	text = export_encode(&c, spans, 2, &len);
	doc = text != NULL ? json_loads(text, 0, NULL) : NULL;
	ok(doc != NULL && len == strlen(text), "export_encode: JSON");
	span = json_array_get(
	    json_object_get(
	        json_array_get(
	            json_object_get(
	                json_array_get(json_object_get(doc, "resourceSpans"),
	                               0),
	                "scopeSpans"),
	            0),
	        "spans"),
	    0);
	is_str(json_string_value(json_object_get(span, "traceId")), TP_ID,
	       "export_encode: the trace id as hex");
	is_str(json_string_value(json_object_get(span, "startTimeUnixNano")),
	       "1700000000123456789",
	       "export_encode: times as decimal strings");
	is(json_integer_value(json_object_get(span, "kind")), 2,
	   "export_encode: kind SERVER is 2");
	is(json_integer_value(
	       json_object_get(json_object_get(span, "status"), "code")),
	   2, "export_encode: status Error is 2");
	ok(text != NULL &&
	       strstr(text, "{\"key\":\"http.response.status_code\",\"value\":"
	                    "{\"intValue\":\"503\"}}") != NULL,
	   "export_encode: an integer attribute as a decimal string");
	ok(text != NULL &&
	       strstr(text, "\"resource\":{\"attributes\":[{\"key\":\"service."
	                    "name\",\"value\":{\"stringValue\":\"svc\"}},{"
	                    "\"key\":\"env\",\"value\":{\"stringValue\":"
	                    "\"prod\"}}") != NULL,
	   "export_encode: the resource: service.name, then "
	   "OTEL_RESOURCE_ATTRIBUTES");
	span = json_array_get(
	    json_object_get(
	        json_array_get(
	            json_object_get(
	                json_array_get(json_object_get(doc, "resourceSpans"),
	                               0),
	                "scopeSpans"),
	            0),
	        "spans"),
	    1);
	ok(json_object_get(span, "parentSpanId") == NULL &&
	       json_object_get(span, "status") == NULL,
	   "export_encode: a root span has no parentSpanId; status unset is "
	   "left out");
	is_str(json_string_value(json_object_get(
	           json_object_get(
	               json_array_get(json_object_get(span, "attributes"), 1),
	               "value"),
	           "stringValue")),
	       "/a\xef\xbf\xbd\"b\n",
	       "export_encode: a byte that is not UTF-8 is U+FFFD, quotes and "
	       "controls escaped: the body stays JSON");
	json_decref(doc);
	free(text);
	free(spans[0]);
	free(spans[1]);
}

static void
test_health(void)
{
	struct health_state st = {0};

	for (size_t i = 0; i < sizeof(target_specs) / sizeof(target_specs[0]);
	     i++) {
		const struct target_spec *c = &target_specs[i];
		struct health_target t;
		const char *why = NULL;
		int r = health_parse_target(c->spec, &t, &why);

		if (c->why != NULL) {
			ok(r == -1 && why != NULL && strcmp(why, c->why) == 0,
			   "--check %s: %s", c->spec, c->why);
			continue;
		}
		ok(r == 0 && (int)t.kind == c->kind &&
		       strcmp(t.host, c->host) == 0 && t.port == c->port &&
		       strcmp(t.path, c->path) == 0,
		   "--check %s -> %s %s:%u%s", c->spec,
		   c->kind == HEALTH_TCP ? "tcp" : "http", c->host, c->port,
		   c->path);
	}
	is_str(health_status_word(st.status), "fail",
	       "a check not run yet fails");
	is(health_record(&st, 1, 3, 1000, 1, NULL), 1, "a first pass: changed");
	is_str(health_status_word(st.status), "pass", "  to pass");
	is(health_record(&st, 0, 3, 1000, 2, "refused"), 0,
	   "one failure of a threshold of 3: still pass");
	is(health_record(&st, 0, 3, 1000, 3, "refused"), 0, "two: still pass");
	is(health_record(&st, 0, 3, 1000, 4, "timed out"), 1,
	   "three in a row: changed to fail");
	ok(st.status == HEALTH_FAIL && strcmp(st.reason, "timed out") == 0 &&
	       st.failures == 3 && st.runs == 4 && st.ran_at_ms == 4,
	   "  with the last reason and the counts");
	is(health_record(&st, 1, 3, 1000, 5, NULL), 1,
	   "one pass: back to pass");
	ok(st.failing == 0 && st.reason[0] == '\0',
	   "  the streak and reason go");
	st = (struct health_state){0};
	is(health_record(&st, 0, 3, 1000, 1, "refused"), 1,
	   "a first run that fails fails at once, whatever the threshold");
	ok(health_name_valid("db-1_a") && !health_name_valid("Db") &&
	       !health_name_valid(""),
	   "check names: [a-z0-9_-]");
}

/* Which routes need nothing set up for the before-handler chain. */
static void
test_middleware_skips(void)
{
	static const struct {
		unsigned int flags;
		int skips;
		const char *why;
	} rows[] = {
	    {ROUTE_PROBE, 1, "a probe skips both links"},
	    {ROUTE_PROBE | ROUTE_PROBE_NAMED, 0,
	     "a named probe is asked per request (its name may be no check's)"},
	    {0, 0, "a route with no flags runs both"},
	    {ROUTE_NO_AUTH, 0, "ROUTE_NO_AUTH still runs the rate limit"},
	    {ROUTE_NO_LIMIT, 0, "ROUTE_NO_LIMIT still runs the token check"},
	    {ROUTE_NO_AUTH | ROUTE_NO_LIMIT, 1, "both flags skip both links"},
	    {ROUTE_METRICS, 0,
	     "/metrics runs both (its token is asked inside)"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		is(middleware_skips(rows[i].flags), rows[i].skips,
		   "middleware_skips: %s", rows[i].why);
}

/* request_db: the runtime's pool, NULL without --database or a runtime. */
static void
test_request_db(void)
{
	struct runtime rt = {.db = NULL};
	struct request req = {.runtime = NULL};

	ok(request_db(&req) == NULL, "request_db: NULL without a runtime");
	req.runtime = &rt;
	ok(request_db(&req) == NULL, "request_db: NULL without --database");
	rt.db = (struct db_pool *)&rt; /* any address: only passed on */
	ok(request_db(&req) == (struct db_pool *)&rt,
	   "request_db: the runtime's pool");
}

static void
test_reply_header(void)
{
	struct reply rep = {0};
	char big[REPLY_VALUE_MAX + 2];
	static const struct {
		const char *name, *value;
	} refused[] = {
	    {"Bad Name", "v"},
	    {"X(y)", "v"},
	    {"", "v"},
	    {"X-A", "a\r\nX-Evil: 1"},
	    {"X-A", "a\nb"},
	    {"X-A", "a\rb"},
	    {"X-A", "a\x01"},
	    {"X-A", "a\x7f"},
	    {"Content-Length", "1"},
	    {"content-type", "text/html"},
	    {"Connection", "close"},
	    {"Transfer-Encoding", "chunked"},
	    {"X-Request-Id", "x"},
	    {"RateLimit", "\"per-client\";r=1;t=1"},
	    {"ratelimit-policy", "\"per-client\";q=1;w=1"},
	    {"Date", "x"},
	    {"X-Empty", ""},
	};

	log_setup(LOG_ERROR, LOG_FORMAT_TEXT, 0); /* the refusals warn */
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		is(reply_header(&rep, refused[i].name, refused[i].value), -1,
		   "reply_header refuses '%s'", refused[i].name);
	is(rep.n_headers, 0, "none of them was added");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	is(reply_header(&rep, "X-Big", big), -1, "a value over 1024 bytes");
	big[REPLY_VALUE_MAX] = '\0';
	is(reply_header(&rep, "X-Big", big), 0, "a value of 1024 bytes");
	is(reply_header(&rep, "ETag", "\"1\"\tx"), 0, "a tab is fine");
	reply_json(&rep, 200, json_object());
	is(rep.n_headers, 2, "reply_json keeps the headers");
	ok(reply_has_header(&rep, "etag") && !reply_has_header(&rep, "X-No"),
	   "reply_has_header ignores case");
	is(reply_header(&rep, "X-Two", big), -1,
	   "two values of 1024 bytes pass REPLY_HEADERS_BYTES");
	while (rep.n_headers < REPLY_HEADERS_MAX)
		reply_header(&rep, "Set-Cookie", "a=b");
	is(reply_header(&rep, "X-More", "v"), -1,
	   "more than REPLY_HEADERS_MAX is refused");
	reply_release(&rep);
	is(rep.n_headers, 0, "reply_release frees them");
	ok(rep.body == NULL, "and the body");
}

struct count_task {
	struct pool_task task;
	pthread_mutex_t *gate; /* held by the test while it wants it busy */
	atomic_int *ran, *finished;
};

static void
count_run(struct pool_task *t)
{
	struct count_task *c = (struct count_task *)(void *)t;

	pthread_mutex_lock(c->gate);
	pthread_mutex_unlock(c->gate);
	atomic_fetch_add(c->ran, 1);
}

static void
count_finish(struct pool_task *t)
{
	struct count_task *c = (struct count_task *)(void *)t;

	atomic_fetch_add(c->finished, 1);
}

static int cancelled;

static void
count_cancel(struct pool_task *t)
{
	(void)t;
	cancelled++;
}

static void
test_pool(void)
{
	pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
	atomic_int ran = 0, finished = 0;
	struct count_task tasks[8];
	struct pool *p = pool_start(2, 3);
	int accepted = 0;
	long long deadline = now_ms() + 10000;

	ok(p != NULL, "a pool of 2 threads and 3 queued");
	pthread_mutex_lock(&gate);
	for (int i = 0; i < 8; i++) {
		tasks[i] = (struct count_task){
		    {count_run, count_finish, NULL}, &gate, &ran, &finished};
		accepted += pool_submit(p, &tasks[i].task) == 0;
	}
	is(accepted, 5, "2 running + 3 queued accepted, 3 refused at once");
	is(pool_submit(p, &tasks[7].task), POOL_FULL, "  as POOL_FULL");
	while (pool_busy(p) < 2 && now_ms() < deadline)
		;
	is(pool_busy(p), 2, "both threads busy");
	is(pool_queued(p), 3, "three waiting");
	pool_close(p, count_cancel);
	is(cancelled, 3, "pool_close hands back the three queued");
	is(pool_submit(p, &tasks[7].task), POOL_CLOSED,
	   "a closed pool takes none, and says it is closed");
	pthread_mutex_unlock(&gate);
	while (atomic_load(&finished) < 2 && now_ms() < deadline)
		;
	is(pool_busy(p), 0, "the running ones end");
	is(atomic_load(&ran), 2, "two ran");
	is(atomic_load(&finished), 2, "and were finished");
	pool_stop(p);
}

static void
test_reply(void)
{
	struct reply rep = {0};
	char buf[256], small[8];
	size_t n;

	reply_error(&rep, 413, "body over %d bytes", 10);
	is(rep.status, 413, "reply_error sets the status");
	ok(rep.problem, "and marks problem details");
	is_str(reply_content_type(&rep), "application/problem+json",
	       "problem content type");
	ok(reply_render(&rep, buf, sizeof(buf), &n) == 0 && n > 0 &&
	       n < sizeof(buf),
	   "renders");
	buf[n < sizeof(buf) ? n : 0] = '\0';
	is_str(buf,
	       "{\"type\":\"about:blank\",\"title\":\"Content Too Large\","
	       "\"status\":413,\"detail\":\"body over 10 bytes\"}\n",
	       "RFC 9457 members in order, then a newline");
	{
		size_t need = 0;

		ok(reply_render(&rep, small, sizeof(small), &need) == 0 &&
		       need == n,
		   "a short buffer reports the length needed");
	}
	reply_clear(&rep);

	reply_json(&rep, 200, NULL);
	is(rep.status, 500, "a NULL body (out of memory) becomes a 500");
	ok(rep.problem, "as problem details");
	reply_clear(&rep);

	reply_json(&rep, 200, json_pack("{s:s}", "status", "ok"));
	is_str(reply_content_type(&rep), "application/json", "JSON type");
	ok(!rep.problem, "not a problem");
	n = 0;
	(void)reply_render(&rep, buf, sizeof(buf), &n);
	buf[n] = '\0';
	is_str(buf, "{\"status\":\"ok\"}\n", "compact JSON and a newline");
	reply_clear(&rep);

	/* An empty text is a reply, not a failure: Content-Length: 0. */
	reply_text(&rep, 200, strdup(""), 0, "text/plain");
	{
		size_t got = 99;
		int r = reply_render(&rep, buf, sizeof(buf), &got);

		ok(r == 0 && got == 0,
		   "an empty text body renders as 0 bytes, not a failure "
		   "(%d, %zu)",
		   r, got);
	}
	reply_clear(&rep);
	ok(reply_render(&rep, buf, sizeof(buf), &n) == -1,
	   "no body at all is a failure");
	reply_clear(&rep);

	is_str(status_title(404), "Not Found", "title 404");
	is_str(status_title(599), "Unknown", "unknown status title");
	is_str(status_title(201), "Created", "title 201");
	is_str(status_title(422), "Unprocessable Content", "title 422");
	is_str(status_title(504), "Gateway Timeout", "title 504");
	is_str(status_title(100), "Continue", "the first code");
	is_str(status_title(511), "Network Authentication Required",
	       "the last code");
	is_str(status_title(306), "Unknown", "306 (unused) is not registered");
	{
		int dense = 1, ordered = 1;

		for (size_t i = 0; i < STATUS_COUNT; i++) {
			dense &= status_index(status_code(i)) == i;
			ordered &=
			    i == 0 || status_code(i - 1) < status_code(i);
		}
		ok(dense && ordered && status_index(299) == STATUS_COUNT &&
		       status_index(0) == STATUS_COUNT,
		   "status_index is dense over the %d registered codes, in "
		   "order; others map past them",
		   STATUS_COUNT);
	}
}

/*
 * Runs config_parse (or, with res, config_parse_with) on "microd" followed by
 * args (NULL-terminated). The strings are copied into writable storage that
 * outlives the call, as argv does in a real process: cfg points into it.
 */
static enum config_result
parse_res(struct config *cfg, const struct resources *res, char *err,
          size_t len, const char *const *args)
{
	static char storage[16][64];
	char *argv[16];
	int argc = 0;

	snprintf(storage[0], sizeof(storage[0]), "microd");
	argv[argc] = storage[argc];
	argc++;
	for (; *args != NULL && argc < 16; args++, argc++) {
		snprintf(storage[argc], sizeof(storage[argc]), "%s", *args);
		argv[argc] = storage[argc];
	}
	if (res != NULL)
		return config_parse_with(cfg, argc, argv, res, err, len);
	return config_parse(cfg, argc, argv, err, len);
}

static enum config_result
parse_args(struct config *cfg, char *err, size_t len, const char *const *args)
{
	return parse_res(cfg, NULL, err, len, args);
}

#define PARSE(cfg, ...)                                                        \
	parse_args((cfg), err, sizeof(err), (const char *[]){__VA_ARGS__, NULL})

static void
test_config(void)
{
	struct config cfg;
	char err[256];

	unsetenv("MICROD_PORT");
	unsetenv("PORT");
	unsetenv("MICROD_BIND");
	unsetenv("MICROD_MAX_BODY");
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_RUN, "no arguments");
	is_str(cfg.bind, "0.0.0.0", "default bind 0.0.0.0");
	is(cfg.port, 8080, "default port 8080");
	is(cfg.max_body, 1 << 20, "default max body 1 MiB");
	ok(cfg.threads >= 1, "default threads >= 1");
	is(cfg.shutdown_timeout_ms, 10000, "default shutdown timeout 10 s");
	is(cfg.log_level, LOG_INFO, "default log level info");

	is(PARSE(&cfg, "--port", "0", "--bind", "::", "--threads=4",
	         "--max-body", "64k", "--log-level", "debug",
	         "--shutdown-timeout", "2.5"),
	   CONFIG_RUN, "every flag");
	is(cfg.port, 0, "--port 0");
	is_str(cfg.bind, "::", "--bind ::");
	is(cfg.threads, 4, "--threads=4");
	is(cfg.max_body, 65536, "--max-body 64k");
	is(cfg.log_level, LOG_DEBUG, "--log-level debug");
	is(cfg.shutdown_timeout_ms, 2500, "--shutdown-timeout 2.5");

	PARSE(&cfg, "--max-body", "1m");
	is(cfg.max_body, 1 << 20, "1m");
	PARSE(&cfg, "--max-body", "1G");
	is(cfg.max_body, 1 << 30, "1G is the largest");
	is(PARSE(&cfg, "--max-body", "2g"), CONFIG_ERROR, "2g is too large");
	is(PARSE(&cfg, "--max-body", "0"), CONFIG_ERROR, "0 is refused");
	is(PARSE(&cfg, "--max-body", "k"), CONFIG_ERROR,
	   "a bare suffix is refused");

	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.per_ip_limit == 0 && cfg.idle_timeout_s == 15 &&
	       cfg.header_timeout_ms == 10000 && cfg.connection_memory == 10240,
	   "limit defaults: no per-ip, 15 s idle, 10 s for a head, 10k");
	PARSE(&cfg, "--connection-memory", "8k");
	is(cfg.connection_memory, 8192, "--connection-memory 8k");
	is(PARSE(&cfg, "--connection-memory", "1k"), CONFIG_ERROR,
	   "--connection-memory below 2k is refused");
	is(PARSE(&cfg, "--connection-memory", "2m"), CONFIG_ERROR,
	   "--connection-memory above 1m is refused");
	is(PARSE(&cfg, "--connection-limit", "0"), CONFIG_ERROR,
	   "--connection-limit 0 is refused");
	PARSE(&cfg, "--per-ip-limit", "16");
	is(cfg.per_ip_limit, 16, "--per-ip-limit 16");
	is(PARSE(&cfg, "--idle-timeout", "0"), CONFIG_ERROR,
	   "--idle-timeout 0 (never) is refused");
	setenv("MICROD_IDLE_TIMEOUT", "30", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.idle_timeout_s, 30, "MICROD_IDLE_TIMEOUT is read");
	unsetenv("MICROD_IDLE_TIMEOUT");

	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.handler_threads == 8 && cfg.handler_queue == 64 &&
	       !cfg.example_routes,
	   "handler pool defaults: 8 threads, a queue of 64; no examples");
	PARSE(&cfg, "--handler-threads", "256", "--handler-queue", "0",
	      "--example-routes");
	ok(cfg.handler_threads == 256 && cfg.handler_queue == 0 &&
	       cfg.example_routes,
	   "--handler-threads 256 --handler-queue 0 --example-routes");
	is(PARSE(&cfg, "--handler-threads", "0"), CONFIG_ERROR,
	   "--handler-threads 0 is refused");
	is_str(err,
	       "--handler-threads: invalid value '0' (expected an integer "
	       "from 1 to 256)",
	       "  naming what is accepted");
	is(PARSE(&cfg, "--handler-threads", "257"), CONFIG_ERROR,
	   "--handler-threads 257 is refused");
	is(PARSE(&cfg, "--handler-queue", "100001"), CONFIG_ERROR,
	   "--handler-queue 100001 is refused");
	setenv("MICROD_HANDLER_QUEUE", "7", 1);
	setenv("MICROD_EXAMPLE_ROUTES", "yes", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.handler_queue == 7 && cfg.example_routes,
	   "MICROD_HANDLER_QUEUE and MICROD_EXAMPLE_ROUTES are read");
	unsetenv("MICROD_HANDLER_QUEUE");
	unsetenv("MICROD_EXAMPLE_ROUTES");

	setenv("PORT", "9000", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.port, 9000, "PORT is read");
	setenv("MICROD_PORT", "9001", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.port, 9001, "MICROD_PORT wins over PORT");
	PARSE(&cfg, "--port", "9002");
	is(cfg.port, 9002, "the flag wins over the environment");
	setenv("MICROD_PORT", "x", 1);
	is(PARSE(&cfg, "--port", "1"), CONFIG_RUN,
	   "a bad variable is not read when a flag sets its option");
	is(cfg.port, 1, "and the flag's value holds");
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_ERROR, "without the flag the bad variable is an error");
	ok(strstr(err, "MICROD_PORT") != NULL && strstr(err, "'x'") != NULL,
	   "naming the variable and value: %s", err);
	unsetenv("MICROD_PORT");
	setenv("MICROD_THREADS", "0", 1);
	is(PARSE(&cfg, "--threads", "2"), CONFIG_RUN,
	   "MICROD_THREADS=0 with --threads 2: the flag wins");
	ok(cfg.threads == 2 && strcmp(cfg.threads_from, "--threads") == 0,
	   "2 threads, from --threads (%s)", cfg.threads_from);
	unsetenv("MICROD_THREADS");
	/* Kubernetes' docker-link variables for a Service named microd. */
	setenv("MICROD_PORT", "tcp://10.96.0.12:80", 1);
	setenv("PORT", "9000", 1);
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_RUN, "MICROD_PORT=tcp://10.96.0.12:80 is not fatal");
	ok(cfg.port == 9000 && cfg.ignored_env != NULL &&
	       strcmp(cfg.ignored_env, "MICROD_PORT") == 0,
	   "it is ignored (PORT=9000 applies) and reported");
	setenv("MICROD_PORT", "udp://10.96.0.12:53", 1);
	unsetenv("PORT");
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.port == 8080 && cfg.ignored_env != NULL,
	   "udp:// too; with no PORT the default 8080");
	setenv("MICROD_PORT", "tcp:10", 1);
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_ERROR, "a value merely starting with tcp is still bad");
	setenv("MICROD_PORT", "9001", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.port == 9001 && cfg.ignored_env == NULL,
	   "a real MICROD_PORT is read, nothing ignored");
	unsetenv("MICROD_PORT");
	unsetenv("PORT");
	setenv("MICROD_MAX_BODY", "nonsense", 1);
	setenv("MICROD_PORT", "9003", 1);
	{
		char a0[] = "microd";
		char *av[] = {a0, NULL};

		is(config_parse_address(&cfg, 1, av, err, sizeof(err)),
		   CONFIG_RUN,
		   "the probe's parse reads no variable but the address");
	}
	is(cfg.port, 9003, "and reads MICROD_PORT");
	{
		char a0[] = "microd", a1[] = "--threads", a2[] = "zero",
		     a3[] = "--port", a4[] = "7";
		char *av[] = {a0, a1, a2, a3, a4, NULL};

		is(config_parse_address(&cfg, 5, av, err, sizeof(err)),
		   CONFIG_RUN, "nor any flag's value but --port/--bind");
		is(cfg.port, 7, "--port 7");
	}
	unsetenv("MICROD_MAX_BODY");
	unsetenv("MICROD_PORT");

	is(PARSE(&cfg, "--port", "abc", "--port", "80"), CONFIG_ERROR,
	   "every value of a repeated flag is checked");
	ok(strstr(err, "'abc'") != NULL, "the bad one named: %s", err);
	PARSE(&cfg, "--port", "81", "--port", "80");
	is(cfg.port, 80, "and the last one counts");
	is(PARSE(&cfg, "--port", "8\n<0>x\xff"), CONFIG_ERROR,
	   "a value with a newline and a non-ASCII byte");
	ok(strchr(err, '\n') == NULL && strstr(err, "'8\\x0a<0>x\\xff'"),
	   "is shown escaped on one line: %s", err);
	setenv("MICROD_PORT",
	       "1234567890123456789012345678901234567890123456789012345678901"
	       "234567890123456789012345678901234567890",
	       1);
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_ERROR, "a long value");
	ok(strstr(err, "...'") != NULL && strlen(err) < 200,
	   "is cut, and says so: %s", err);
	unsetenv("MICROD_PORT");
	is(PARSE(&cfg, "--port", "65536"), CONFIG_ERROR, "port 65536");
	ok(strstr(err, "--port") && strstr(err, "'65536'") &&
	       strstr(err, "0 to 65535"),
	   "error names flag, value and range: %s", err);
	is(PARSE(&cfg, "--port", "-1"), CONFIG_ERROR, "port -1");
	is(PARSE(&cfg, "--port", " 80"), CONFIG_ERROR, "port with a space");
	is(PARSE(&cfg, "--port"), CONFIG_ERROR, "a flag without its value");
	ok(strstr(err, "missing value") != NULL, "says the value is missing");
	is(PARSE(&cfg, "--bind", "localhost"), CONFIG_ERROR,
	   "bind takes numeric addresses");
	is(PARSE(&cfg, "--threads", "0"), CONFIG_ERROR, "zero threads");
	is(PARSE(&cfg, "--log-level", "loud"), CONFIG_ERROR,
	   "unknown log level");
	is(PARSE(&cfg, "--shutdown-timeout", "1.2345"), CONFIG_ERROR,
	   "more than millisecond precision");
	is(PARSE(&cfg, "--shutdown-timeout", "3601"), CONFIG_ERROR,
	   "over an hour");
	is(PARSE(&cfg, "--shutdown-timeout", "1."), CONFIG_ERROR,
	   "a dot without decimals");
	PARSE(&cfg, "--log-probes");
	is(cfg.log_probes, 1, "--log-probes alone is on");
	is(PARSE(&cfg, "--log-probes", "false"), CONFIG_RUN,
	   "--log-probes false (a separate value) is accepted");
	is(cfg.log_probes, 0, "and turns it off");
	PARSE(&cfg, "--log-probes", "TRUE");
	is(cfg.log_probes, 1, "--log-probes TRUE: any case");
	PARSE(&cfg, "--log-probes=No");
	is(cfg.log_probes, 0, "--log-probes=No");
	is(PARSE(&cfg, "--log-probes", "--port", "1"), CONFIG_RUN,
	   "a switch followed by another flag");
	ok(cfg.log_probes == 1 && cfg.port == 1, "leaves that flag alone");
	is(PARSE(&cfg, "--log-probes", "maybe"), CONFIG_ERROR,
	   "a switch followed by a non-boolean: a stray argument");
	setenv("MICROD_LOG_PROBES", "Yes", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.log_probes, 1, "MICROD_LOG_PROBES=Yes: any case");
	unsetenv("MICROD_LOG_PROBES");
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.body_budget, 8 << 20, "default body budget 8 MiB");
	PARSE(&cfg, "--max-body", "16m");
	is(cfg.body_budget, 32 << 20, "or twice a larger --max-body");
	PARSE(&cfg, "--body-budget", "64k", "--max-body", "64k");
	is(cfg.body_budget, 64 << 10, "--body-budget 64k");
	is(PARSE(&cfg, "--body-budget", "1m", "--max-body", "2m"), CONFIG_ERROR,
	   "a budget below --max-body is refused");
	ok(strstr(err, "--body-budget") != NULL && strstr(err, "--max-body"),
	   "naming both: %s", err);
	is(PARSE(&cfg, "--body-budget", "32k"), CONFIG_ERROR,
	   "a budget below 64k is refused");
	is(PARSE(&cfg, "--porty", "1"), CONFIG_ERROR,
	   "a flag that only starts like one");
	is(PARSE(&cfg, "extra"), CONFIG_ERROR, "a stray argument");
	is(PARSE(&cfg, "--help"), CONFIG_HELP, "--help");
	is(PARSE(&cfg, "--version"), CONFIG_VERSION, "--version");
}

/*
 * Every bounded option at its edges: the lowest and highest values accepted,
 * the nearest ones refused, and the error, whose range comes from the same
 * row as the bounds. below is NULL where nothing is below the lowest.
 */
static void
test_config_bounds(void)
{
	static const struct bound_case {
		const char *flag, *lowest, *below, *highest, *above, *expected;
	} cases[] = {
	    {"port", "0", NULL, "65535", "65536", "an integer from 0 to 65535"},
	    {"threads", "1", "0", "256", "257", "an integer from 1 to 256"},
	    {"max-body", "1", "0", "1g", "1025m",
	     "a size from 1 byte to 1g, e.g. 4096, 64k, 1m"},
	    {"body-budget", "64k", "65535", "4g", "4294967297",
	     "a size from 64k to 4g, at least --max-body"},
	    {"connection-limit", "1", "0", "1000000", "1000001",
	     "an integer from 1 to 1000000"},
	    {"per-ip-limit", "0", NULL, "1000000", "1000001",
	     "an integer from 0 to 1000000"},
	    {"idle-timeout", "1", "0", "3600", "3601",
	     "whole seconds from 1 to 3600"},
	    {"header-timeout", "0.1", "0.099", "3600", "3600.001",
	     "seconds from 0.1 to 3600"},
	    {"connection-memory", "2k", "2047", "1m", "1025k",
	     "a size from 2k to 1m"},
	    {"shutdown-timeout", "0", NULL, "3600", "3600.001",
	     "seconds from 0 to 3600, e.g. 10 or 2.5"},
	    {"handler-threads", "1", "0", "256", "257",
	     "an integer from 1 to 256"},
	    {"handler-queue", "0", NULL, "100000", "100001",
	     "an integer from 0 to 100000"},
	    {"check-interval", "0.1", "0.099", "3600", "3600.001",
	     "seconds from 0.1 to 3600"},
	    {"check-timeout", "0.01", "0.009", "60", "60.001",
	     "seconds from 0.01 to 60"},
	    {"check-threshold", "1", "0", "100", "101",
	     "an integer from 1 to 100"},
	    {"tls-port", "0", NULL, "65535", "65536",
	     "an integer from 0 to 65535"},
	    {"rate-limit", "0", NULL, "1000000", "1000000.001",
	     "requests a second from 0 to 1000000, up to 3 decimals, e.g. 50 "
	     "or 0.5"},
	    {"rate-burst", "1", "0", "1000000", "1000001",
	     "an integer from 1 to 1000000"},
	    {"rate-limit-clients", "8", "7", "16777216", "16777217",
	     "an integer from 8 to 16777216"},
	    {"drain-delay", "0", NULL, "3600", "3600.001",
	     "seconds from 0 to 3600, e.g. 5 or 0.5"},
	    /* Words: one accepted, and one near miss. */
	    {"event-loop", "epoll", NULL, "poll", "EPOLL", "poll or epoll"},
	    {"log-format", "text", NULL, "json", "logfmt", "json or text"},
	    {"log-level", "error", NULL, "debug", "warning",
	     "one of error, warn, info, debug"},
	};
	static char longest[4097];
	struct config cfg;
	char err[256], want[256];

	/* The budget's lowest is below the default --max-body. */
	setenv("MICROD_MAX_BODY", "64k", 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bound_case *c = &cases[i];
		char flag[40];
		int ok_ends, refused = 1;

		snprintf(flag, sizeof(flag), "--%s", c->flag);
		ok_ends = PARSE(&cfg, flag, c->lowest) == CONFIG_RUN &&
		          PARSE(&cfg, flag, c->highest) == CONFIG_RUN;
		if (c->below != NULL) {
			snprintf(want, sizeof(want),
			         "%s: invalid value '%s' (expected %s)", flag,
			         c->below, c->expected);
			refused = PARSE(&cfg, flag, c->below) == CONFIG_ERROR &&
			          strcmp(err, want) == 0;
		}
		snprintf(want, sizeof(want),
		         "%s: invalid value '%s' (expected %s)", flag, c->above,
		         c->expected);
		refused = refused &&
		          PARSE(&cfg, flag, c->above) == CONFIG_ERROR &&
		          strcmp(err, want) == 0;
		ok(ok_ends && refused, "%s takes %s and %s, not %s%s%s: %s",
		   flag, c->lowest, c->highest, c->below ? c->below : "",
		   c->below ? " and " : "", c->above, err);
	}
	unsetenv("MICROD_MAX_BODY");

	/* Strings, through variables: argv here holds 63 bytes at most. */
	memset(longest, 'p', 4095);
	setenv("MICROD_AUTH_TOKEN_FILE", longest, 1);
	is(PARSE(&cfg, "--port", "1"), CONFIG_RUN,
	   "a token file path of 4095 bytes is taken");
	longest[4095] = 'p';
	setenv("MICROD_AUTH_TOKEN_FILE", longest, 1);
	ok(PARSE(&cfg, "--port", "1") == CONFIG_ERROR &&
	       strstr(err, "MICROD_AUTH_TOKEN_FILE: invalid value 'ppp") ==
	           err &&
	       strstr(err, "...' (expected a path to a file of bearer tokens, "
	                   "one a line)") != NULL,
	   "one of 4096 bytes is not: %s", err);
	setenv("MICROD_AUTH_TOKEN_FILE", "", 1);
	is(PARSE(&cfg, "--port", "1"), CONFIG_ERROR, "nor an empty one");
	unsetenv("MICROD_AUTH_TOKEN_FILE");
	longest[1023] = '\0';
	setenv("MICROD_TLS_PRIORITIES", longest, 1);
	is(PARSE(&cfg, "--port", "1"), CONFIG_RUN,
	   "a priority string of 1023 bytes is taken");
	longest[1023] = 'p';
	longest[1024] = '\0';
	setenv("MICROD_TLS_PRIORITIES", longest, 1);
	ok(PARSE(&cfg, "--port", "1") == CONFIG_ERROR &&
	       strstr(err, "(expected a GnuTLS priority string)") != NULL,
	   "one of 1024 bytes is not: %s", err);
	unsetenv("MICROD_TLS_PRIORITIES");

	/* The defaults the rows give. */
	PARSE(&cfg, "--port", "1");
	ok(cfg.event_loop == EVENT_LOOP_EPOLL && cfg.tls_port == 8443 &&
	       strcmp(cfg.tls_priorities, CONFIG_TLS_PRIORITIES) == 0 &&
	       cfg.check_interval_ms == 5000 && cfg.check_timeout_ms == 1000 &&
	       cfg.check_threshold == 1 && cfg.rate_milli == 0 &&
	       cfg.rate_burst == 0 && cfg.rate_clients == 16384 &&
	       cfg.drain_delay_ms == 0 && cfg.log_format == -1 &&
	       cfg.tls_cert == NULL && cfg.auth_token_file == NULL &&
	       !cfg.log_probes && !cfg.health_details && !cfg.auth_metrics &&
	       cfg.n_checks == 0 && cfg.n_trusted == 0,
	   "the other defaults: epoll, HTTPS port 8443 when enabled, TLS 1.2 "
	   "and 1.3, checks every 5 s for 1 s, no rate limit, no drain "
	   "delay, switches off");
	is(PARSE(&cfg, "--port"), CONFIG_ERROR, "a flag without its value");
	is_str(err,
	       "--port: missing value (expected an integer from 0 to "
	       "65535)",
	       "  says what it expects");
}

/* Only cases that return before any descriptor is touched. */
static void
test_resources(void)
{
	static const struct cpu_case {
		const char *text;
		int verdict;
		unsigned int cpus;
	} cpu_cases[] = {
	    {"max 100000\n", 0, 0},
	    {"150000 100000\n", 1, 2},
	    {"100000 100000\n", 1, 1},
	    {"50000 100000", 1, 1},
	    {"400000 100000", 1, 4},
	    {"-1 100000", 0, 0},
	    {"", -1, 0},
	    {"x 100000", -1, 0},
	    {"100000 0", -1, 0},
	    {"0 100000", -1, 0},
	    {"250000", 1, 3}, /* v1 quota alone: period 100000 */
	};
	static const struct mem_case {
		const char *text;
		int verdict;
		unsigned long long bytes;
	} mem_cases[] = {
	    {"max\n", 0, 0},
	    {"67108864\n", 1, 67108864},
	    {"9223372036854771712\n", 0, 0}, /* v1 unlimited */
	    {"-1", -1, 0},
	    {"64M", -1, 0},
	};
	static const char proc_cgroup[] =
	    "12:pids:/\n4:memory:/kubepods/pod1/c1\n2:cpu,cpuacct:/k/c\n"
	    "1:name=systemd:/x\n0::/system.slice/microd.service\n";
	static const char mountinfo[] =
	    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
	    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
	    "rw,cpu,cpuacct\n"
	    "33 31 0:30 /kubepods/pod1 /sys/fs/cgroup/memory rw - cgroup "
	    "cgroup rw,memory\n"
	    "34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n"
	    "41 31 0:38 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 "
	    "cgroup2 rw\n";
	struct resources res = {.cpus = 8, .memory = 0};
	struct config cfg;
	char err[256], out[256];
	int n;

	for (size_t i = 0; i < sizeof(cpu_cases) / sizeof(*cpu_cases); i++) {
		const struct cpu_case *c = &cpu_cases[i];
		unsigned long long q = 0, p = 0;
		int v = resources_parse_cpu_max(c->text, &q, &p);

		ok(v == c->verdict &&
		       (v != 1 || resources_quota_cpus(q, p) == c->cpus),
		   "cpu quota '%s': %d, %u CPUs", c->text, c->verdict, c->cpus);
	}
	for (size_t i = 0; i < sizeof(mem_cases) / sizeof(*mem_cases); i++) {
		const struct mem_case *c = &mem_cases[i];
		unsigned long long b = 0;
		int v = resources_parse_memory(c->text, &b);

		ok(v == c->verdict && (v != 1 || b == c->bytes),
		   "memory limit '%s': %d", c->text, c->verdict);
	}
	ok(resources_cgroup_path(proc_cgroup, "memory", out, sizeof(out)) ==
	           0 &&
	       strcmp(out, "/kubepods/pod1/c1") == 0,
	   "v1 memory cgroup: %s", out);
	ok(resources_cgroup_path(proc_cgroup, "cpu", out, sizeof(out)) == 0 &&
	       strcmp(out, "/k/c") == 0,
	   "v1 cpu from cpu,cpuacct: %s", out);
	ok(resources_cgroup_path(proc_cgroup, "cpuacct", out, sizeof(out)) == 0,
	   "cpuacct is its own item of the list");
	ok(resources_cgroup_path(proc_cgroup, NULL, out, sizeof(out)) == 0 &&
	       strcmp(out, "/system.slice/microd.service") == 0,
	   "v2 cgroup: %s", out);
	is(resources_cgroup_path("1:name=systemd:/x\n", "memory", out,
	                         sizeof(out)),
	   -1, "no memory controller: none");
	is(resources_cgroup_path("2:cpuacct:/x\n", "cpu", out, sizeof(out)), -1,
	   "cpuacct is not cpu");
	n = resources_cgroup_dir(mountinfo, "memory", "/kubepods/pod1/c1", out,
	                         sizeof(out));
	ok(n == 21 && strcmp(out, "/sys/fs/cgroup/memory/c1") == 0,
	   "a mount of a subtree: the path below its root (%s, %d)", out, n);
	n = resources_cgroup_dir(mountinfo, "cpu", "/k/c", out, sizeof(out));
	ok(n == 26 && strcmp(out, "/sys/fs/cgroup/cpu,cpuacct/k/c") == 0,
	   "cpu in a joint mount: %s", out);
	n = resources_cgroup_dir(mountinfo, NULL, "/", out, sizeof(out));
	ok(n == 22 && strcmp(out, "/sys/fs/cgroup/unified") == 0,
	   "v2 root cgroup: the mount point itself (%s)", out);
	is(resources_cgroup_dir(mountinfo, "memory", "/other/c", out,
	                        sizeof(out)),
	   -1, "a cgroup outside the mount's root: none");
	is(resources_cgroup_dir(mountinfo, "memory", "/kubepods/pod10", out,
	                        sizeof(out)),
	   -1, "a root is a path prefix, not a string prefix");
	is(resources_cgroup_dir(mountinfo, "pids", "/", out, sizeof(out)), -1,
	   "a controller not mounted: none");
	n = resources_cgroup_dir(
	    "40 31 0:38 /other /mnt/x rw - cgroup2 cgroup2 rw\n"
	    "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
	    NULL, "/a/b", out, sizeof(out));
	ok(n == 14 && strcmp(out, "/sys/fs/cgroup/a/b") == 0,
	   "a mount that does not hold the cgroup is passed over: %s", out);
	n = resources_cgroup_dir(
	    "41 31 0:38 /my\\040pod /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
	    NULL, "/my pod/c", out, sizeof(out));
	ok(n == 14 && strcmp(out, "/sys/fs/cgroup/c") == 0,
	   "octal escapes in mountinfo are decoded: %s", out);
	is(resources_cgroup_path("0::/../../x\n", NULL, out, sizeof(out)), -1,
	   "a cgroup outside the namespace (/../..): none");
	ok(resources_cgroup_path("0::/a..b/c\n", NULL, out, sizeof(out)) == 0,
	   "'..' inside a name is a name");

	/* The defaults that follow. */
	snprintf(res.cpus_from, sizeof(res.cpus_from), "test quota");
	snprintf(res.memory_from, sizeof(res.memory_from), "none");
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.threads == 8 && strcmp(cfg.threads_from, "test quota") == 0,
	   "threads default to the CPUs, saying whence");
	ok(cfg.connection_limit == 10000 && cfg.body_budget == 8 << 20,
	   "no memory limit, descriptors unknown: 10000 connections, 8 MiB "
	   "budget");
	res.files = 20000;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.connection_limit == 20000 - 256 - 8 * 8 - 8 &&
	       strcmp(cfg.connections_from,
	              "the descriptor limit 20000, less 328") == 0,
	   "20,000 descriptors, 8 threads, 8 handler threads: the limit "
	   "follows them, less 256, 8 a thread and 1 a handler (%u, %s)",
	   cfg.connection_limit, cfg.connections_from);
	parse_res(&cfg, &res, err, sizeof(err),
	          (const char *[]){"--handler-threads", "256", "--database",
	                           "host=/tmp", NULL});
	ok(cfg.connection_limit == 20000 - 256 - 8 * 8 - 256 - 256,
	   "  256 handler threads and a database pool of as many: 1 each "
	   "more (%u, %s)",
	   cfg.connection_limit, cfg.connections_from);
	parse_res(&cfg, &res, err, sizeof(err),
	          (const char *[]){"--handler-threads", "256", "--database",
	                           "host=/tmp", "--database-pool", "4", NULL});
	ok(cfg.connection_limit == 20000 - 256 - 8 * 8 - 256 - 4,
	   "  a pool of 4 counts 4 (%u)", cfg.connection_limit);
	res.files = 100;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	is(cfg.connection_limit, 16, "100 descriptors: the floor, 16");
	res.files = 0;
	res.cpus = 1;
	res.memory = 64ULL << 20;
	snprintf(res.memory_from, sizeof(res.memory_from), "test limit");
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	/* (64 - 16 - 8) MiB - the 8 MiB budget, over 10 + 8 KiB */
	ok(cfg.threads == 1 && cfg.connection_limit == 1820 &&
	       cfg.body_budget == 8 << 20,
	   "64 MiB: 1 thread, 1820 connections, 8 MiB budget (%u, %zu)",
	   cfg.connection_limit, cfg.body_budget);
	ok(strstr(cfg.connections_from, "64 MiB test limit") != NULL &&
	       strcmp(cfg.budget_from, "default") == 0,
	   "saying whence: %s; the budget stays the default",
	   cfg.connections_from);
	res.memory = 24ULL << 20;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.body_budget == 2621440 && cfg.connection_limit == 426,
	   "24 MiB: budget a quarter of 10 MiB, 426 connections (%zu, %u)",
	   cfg.body_budget, cfg.connection_limit);
	res.memory = 8ULL << 20;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.body_budget == 1 << 20 && cfg.connection_limit == 16,
	   "8 MiB: the floor, budget = --max-body, 16 connections");
	parse_res(&cfg, &res, err, sizeof(err),
	          (const char *[]){"--connection-limit", "5000", NULL});
	ok(cfg.connection_limit == 5000 &&
	       strcmp(cfg.connections_from, "--connection-limit") == 0,
	   "a flag is never overridden, and is named as the source");
	res.cpus = 32;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.threads == 16 && cfg.threads_asked == 0 &&
	       strstr(cfg.threads_from, "at most the connection limit"),
	   "32 CPUs, 16 connections: 16 threads, quietly (%s)",
	   cfg.threads_from);
	parse_res(&cfg, &res, err, sizeof(err),
	          (const char *[]){"--threads", "20", NULL});
	ok(cfg.threads == 16 && cfg.threads_asked == 20,
	   "--threads 20 over 16 connections: 16, and the 20 kept for the "
	   "warning");
	res.cpus = 1;
	res.memory = 512ULL << 10;
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	ok(strstr(cfg.connections_from, "512 KiB") != NULL,
	   "a limit under 1 MiB is shown in KiB: %s", cfg.connections_from);
	res.memory = 8ULL << 20;
	setenv("MICROD_BODY_BUDGET", "32m", 1);
	parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL});
	is(cfg.body_budget, 32 << 20, "nor a variable");
	setenv("MICROD_BODY_BUDGET", "1m", 1);
	setenv("MICROD_MAX_BODY", "2m", 1);
	is(parse_res(&cfg, &res, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_ERROR, "a budget below max body, both from variables");
	ok(strstr(err, "MICROD_BODY_BUDGET (") == err &&
	       strstr(err, "below MICROD_MAX_BODY") != NULL,
	   "names the variables, not flags: %s", err);
	unsetenv("MICROD_MAX_BODY");
	unsetenv("MICROD_BODY_BUDGET");
	res.memory = 64ULL << 20;
	parse_res(&cfg, &res, err, sizeof(err),
	          (const char *[]){"--connection-memory", "4k", NULL});
	is(cfg.connection_limit, 2730,
	   "smaller connections: more fit (4 + 8 KiB each)");
}

static void
test_activation(void)
{
	char err[256] = "", pid[32];
	int tls_fd;

	is(activation_listen_fd(err, sizeof(err), &tls_fd), ACTIVATION_NONE,
	   "activation: nothing passed");
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	is(activation_listen_fd(err, sizeof(err), &tls_fd), ACTIVATION_NONE,
	   "LISTEN_PID of another process: ignored");
	ok(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL,
	   "and the variables are removed");
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "two", 1);
	is(activation_listen_fd(err, sizeof(err), &tls_fd), ACTIVATION_ERROR,
	   "LISTEN_FDS=two is an error");
	is_str(err, "LISTEN_FDS: invalid value 'two'", "naming the variable");
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "0", 1);
	setenv("LISTEN_FDNAMES", "", 1);
	is(activation_listen_fd(err, sizeof(err), &tls_fd), ACTIVATION_NONE,
	   "LISTEN_FDS=0: nothing passed");
	ok(getenv("LISTEN_FDNAMES") == NULL, "LISTEN_FDNAMES removed too");
}

static void
test_notify(void)
{
	struct notifier n;
	char err[256] = "";

	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	is(notify_open(&n, err, sizeof(err)), 0, "notify: no NOTIFY_SOCKET");
	ok(n.fd < 0 && n.watchdog_usec == 0, "nothing to send to, no watchdog");
	is(notify_send(&n, "READY=1"), 0, "sending is then a no-op");

	setenv("NOTIFY_SOCKET", "@microd-unit", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "an abstract name");
	ok(n.fd >= 0 && n.addr.sun_path[0] == '\0' &&
	       strncmp(n.addr.sun_path + 1, "microd-unit", 11) == 0 &&
	       n.addr_len == offsetof(struct sockaddr_un, sun_path) + 12,
	   "leading NUL, no terminator counted");
	notify_close(&n);
	setenv("NOTIFY_SOCKET", "/run/x/notify", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "a path");
	ok(n.addr_len == offsetof(struct sockaddr_un, sun_path) + 14,
	   "its terminator counted");
	notify_close(&n);
	setenv("NOTIFY_SOCKET", "run/notify", 1);
	is(notify_open(&n, err, sizeof(err)), -1, "a relative path is refused");
	ok(strstr(err, "NOTIFY_SOCKET") != NULL, "naming the variable: %s",
	   err);
	unsetenv("NOTIFY_SOCKET");

	setenv("WATCHDOG_USEC", "5000000", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "WATCHDOG_USEC alone");
	ok(n.watchdog_usec == 5000000, "is ours");
	setenv("WATCHDOG_PID", "1", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "WATCHDOG_PID of another");
	ok(n.watchdog_usec == 0, "is not ours");
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	is(notify_open(&n, err, sizeof(err)), -1, "WATCHDOG_USEC=soon refused");
	unsetenv("WATCHDOG_USEC");
}

/* encode_json() against json_dumpb(): the same bytes, or both refuse. */
static int
same_as_jansson(json_t *v, const char *what)
{
	char ours[65536], theirs[65536];
	size_t a = encode_json(v, ours, sizeof(ours));
	size_t b = json_dumpb(v, theirs, sizeof(theirs),
	                      JSON_COMPACT | JSON_ENCODE_ANY);

	if (a == b &&
	    (a == 0 || a > sizeof(ours) || memcmp(ours, theirs, a) == 0))
		return 1;
	diag("%s: ours %zu bytes, jansson's %zu: %.*s | %.*s", what, a, b,
	     (int)(a < 200 ? a : 200), ours, (int)(b < 200 ? b : 200), theirs);
	return 0;
}

static unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;

static unsigned long long
rng(void)
{
	/* xorshift64*: a fixed seed, so a failure can be replayed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* Random UTF-8 text: every ASCII byte, controls included, and multibyte. */
static json_t *
random_string(void)
{
	static const char *const wide[] = {"\xc3\xa9", "\xe2\x82\xac",
	                                   "\xf0\x9f\x98\x80", "\xe2\x80\xa8",
	                                   "\xef\xbf\xbf"};
	char text[64];
	size_t len = 0, want = rng() % 16;

	while (len < want) {
		if (rng() % 4 == 0) {
			const char *w = wide[rng() % 5];

			while (*w != '\0')
				text[len++] = *w++;
		} else {
			text[len++] = (char)(rng() % 128);
		}
	}
	return json_stringn(text, len);
}

static json_t *
random_value(int depth)
{
	unsigned long long bits;
	double d;
	json_t *v;

	switch (rng() % (depth < 5 ? 8 : 6)) {
	case 0:
		return json_integer((json_int_t)rng());
	case 1:
		do {
			bits = rng();
			memcpy(&d, &bits, sizeof(d));
			v = json_real(d); /* NULL for NaN and infinities */
		} while (v == NULL);
		return v;
	case 2:
		return random_string();
	case 3:
		return json_true();
	case 4:
		return json_false();
	case 5:
		return json_null();
	case 6:
		v = json_array();
		for (unsigned long long i = rng() % 5; i > 0; i--)
			json_array_append_new(v, random_value(depth + 1));
		return v;
	default:
		v = json_object();
		for (unsigned long long i = rng() % 5; i > 0; i--) {
			json_t *key = random_string();

			json_object_setn_new(v, json_string_value(key),
			                     json_string_length(key),
			                     random_value(depth + 1));
			json_decref(key);
		}
		return v;
	}
}

static void
test_encode(void)
{
	static const char *const texts[] = {
	    "{}",
	    "[]",
	    "\"\"",
	    "0",
	    "-1",
	    "true",
	    "false",
	    "null",
	    "{\"status\":\"ok\"}",
	    "[1,[2,[3,{}]],{\"a\":[]}]",
	    "\"quote \\\" backslash \\\\ slash / tab \\t nl \\n\"",
	    "\"\\u0000\\u001f\\u007f\\u00e9\\u2028\\ud83d\\ude00\"",
	    "{\"b\":1,\"a\":2,\"k\\\"\\\\\\u00e9\":3}"};
	static const double reals[] = {0.0,
	                               -0.0,
	                               1.0,
	                               -2.5,
	                               0.1,
	                               1e300,
	                               1e-5,
	                               1e-300,
	                               1e22,
	                               1e21,
	                               123456789.0,
	                               5e-324,
	                               1.7976931348623157e308,
	                               2.2250738585072014e-308,
	                               3.141592653589793,
	                               100.0,
	                               1e100};
	static const json_int_t ints[] = {0,  1,   -1,        9,        10,
	                                  99, 100, LLONG_MAX, LLONG_MIN};
	char ascii[128], buf[8], full[64];
	int mismatches = 0;
	json_t *v, *a, *b;
	size_t n;

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL,
		               NULL);
		ok(v != NULL && same_as_jansson(v, texts[i]),
		   "encode_json writes %s as jansson does", texts[i]);
		json_decref(v);
	}
	for (size_t i = 0; i < sizeof(ascii); i++)
		ascii[i] = (char)i;
	v = json_stringn(ascii, sizeof(ascii));
	ok(same_as_jansson(v, "ASCII 0-127"),
	   "every ASCII byte, NUL and controls included, escaped as jansson "
	   "does");
	json_decref(v);
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		v = json_real(reals[i]);
		mismatches += !same_as_jansson(v, "a real");
		json_decref(v);
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		v = json_integer(ints[i]);
		mismatches += !same_as_jansson(v, "an integer");
		json_decref(v);
	}
	is(mismatches, 0,
	   "reals (signed zero, exponents, extremes) and integers (both ends "
	   "of 64 bits) as jansson writes them");

	mismatches = 0;
	for (int i = 0; i < 3000; i++) {
		v = random_value(0);
		mismatches += !same_as_jansson(v, "a random value");
		json_decref(v);
	}
	is(mismatches, 0, "3000 random values: the same bytes as json_dumpb");

	v = json_pack("{s:s, s:[i,i]}", "status", "ok", "n", 1, 2);
	n = encode_json(v, full, sizeof(full));
	is(encode_json(v, buf, sizeof(buf)), n,
	   "a buffer too small still gets the whole length back");
	ok(memcmp(buf, full, sizeof(buf)) == 0,
	   "and the text's beginning, no more than fits");
	json_decref(v);

	v = json_stringn_nocheck("\xff", 1);
	is(encode_json(v, full, sizeof(full)), (size_t)0,
	   "a string that is not UTF-8 is refused, as jansson refuses it");
	json_decref(v);

	a = json_array();
	b = json_array();
	json_array_append(b, a);
	json_array_append(a, b);
	is(encode_json(a, full, sizeof(full)), (size_t)0,
	   "a reference loop is refused (by depth), as jansson refuses it");
	json_array_clear(a);
	json_decref(a);
	json_decref(b);

	v = json_array();
	for (int i = 1; i < ENCODE_MAX_DEPTH; i++) {
		json_t *outer = json_array();

		json_array_append_new(outer, v);
		v = outer;
	}
	n = encode_json(v, NULL, 0);
	is(n, (size_t)(2 * ENCODE_MAX_DEPTH), "%d nested arrays are written",
	   ENCODE_MAX_DEPTH);
	a = json_array();
	json_array_append_new(a, v);
	is(encode_json(a, NULL, 0), (size_t)0, "one more level is refused");
	json_decref(a);
}

static const char BAD_NAME[] = "invalid header field name";
static const char EXTENDS[] =
    "header field name extends a framing header's name (obs-fold?)";

/*
 * One header field beside a correct Host, so each row is about its field
 * alone. The bytes are what libmicrohttpd 0.9.75 stores as the name: it keeps
 * whatever stands before the colon, and glues an obs-fold line onto it.
 */
static const struct name_case {
	const char *name, *value;
	unsigned int status; /* 0: accepted */
	const char *detail;
} name_cases[] = {
    {"X-Kit", "v", 0, NULL},
    {"!#$%&'*+-.^_`|~09azAZ", "v", 0, NULL},
    {"X-Host", "v", 0, NULL},
    {"Content-Type", "v", 0, NULL},
    {"", "foo", 400, BAD_NAME},
    {"Transfer-Encoding ", "chunked", 400, BAD_NAME},
    {"Content-Length ", "2", 400, BAD_NAME},
    {"Transfer-Encoding\t", "chunked", 400, BAD_NAME},
    {"Transfer-Encoding\v", "chunked", 400, BAD_NAME},
    {" X", "y", 400, BAD_NAME},
    {"X Kit", "v", 400, BAD_NAME},
    {"X(y)@{}", "foo", 400, BAD_NAME},
    {"X\x01"
     "A",
     "b", 400, BAD_NAME},
    {"X\x7f"
     "A",
     "b", 400, BAD_NAME},
    {"X\xc3\xa9", "b", 400, BAD_NAME},
    {"X\x80", "b", 400, BAD_NAME},
    {"X(", "b", 400, BAD_NAME},
    {"X)", "b", 400, BAD_NAME},
    {"X<", "b", 400, BAD_NAME},
    {"X>", "b", 400, BAD_NAME},
    {"X@", "b", 400, BAD_NAME},
    {"X,", "b", 400, BAD_NAME},
    {"X;", "b", 400, BAD_NAME},
    {"X\\", "b", 400, BAD_NAME},
    {"X\"", "b", 400, BAD_NAME},
    {"X/", "b", 400, BAD_NAME},
    {"X[", "b", 400, BAD_NAME},
    {"X]", "b", 400, BAD_NAME},
    {"X?", "b", 400, BAD_NAME},
    {"X=", "b", 400, BAD_NAME},
    {"X{", "b", 400, BAD_NAME},
    {"X}", "b", 400, BAD_NAME},
    {"X:", "b", 400, BAD_NAME},
    /* obs-fold: "Content-Length: 2" + " 0" arrives as this. */
    {"Content-Length0", "2", 400, EXTENDS},
    {"content-length0", "2", 400, EXTENDS},
    {"Transfer-Encodingx", "chunked", 400, EXTENDS},
    {"Hosty", "x", 400, EXTENDS},
    /* The fold's line had a space in it: the name gets it. */
    {"X-Ab c", "a", 400, BAD_NAME},
    /* Framing rules keep their place. */
    {"Host", "u", 400, "more than one Host header"},
    {"Transfer-Encoding", "gzip", 501,
     "only the chunked transfer coding is supported"},
};

static void
test_policy_names(void)
{
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]);
	     i++) {
		const struct name_case *c = &name_cases[i];
		struct policy_field f[] = {{"Host", "t", 0},
		                           {c->name, c->value, 0}};
		struct policy_framing fr;
		struct policy_verdict v =
		    policy_check_head("HTTP/1.1", f, 2, &fr);
		struct policy_verdict t = policy_check_trailers(f + 1, 1);
		int ok_head =
		    v.status == c->status &&
		    (c->detail == NULL ? v.detail == NULL
		                       : v.detail != NULL &&
		                             strcmp(v.detail, c->detail) == 0);

		ok(ok_head, "head field name '%s': %u %s", c->name, v.status,
		   v.detail != NULL ? v.detail : "accepted");
		/* Trailers share the name rules (framing names aside). */
		if (c->detail == BAD_NAME || c->detail == EXTENDS)
			ok(t.status == 400 && strcmp(t.detail, c->detail) == 0,
			   "trailer name '%s': %u %s", c->name, t.status,
			   t.detail != NULL ? t.detail : "accepted");
	}
}

static void
test_policy_framing(void)
{
	struct policy_framing fr;
	struct policy_verdict v;
	const struct policy_field cl[] = {{"Host", "t", 0},
	                                  {"content-length", "42", 0}};
	const struct policy_field te[] = {{"Host", "t", 0},
	                                  {"Transfer-Encoding", "Chunked", 0}};
	const struct policy_field both[] = {
	    {"Host", "t", 0},
	    {"Content-Length", "4", 0},
	    {"Transfer-Encoding", "chunked", 0}};
	const struct policy_field differ[] = {{"Host", "t", 0},
	                                      {"Content-Length", "2", 0},
	                                      {"Content-Length", "3", 0}};
	const struct policy_field same[] = {{"Host", "t", 0},
	                                    {"Content-Length", "2", 0},
	                                    {"Content-Length", "2", 0}};
	const struct policy_field bad_len[] = {{"Host", "t", 0},
	                                       {"Content-Length", "+2", 0}};
	const struct policy_field two_te[] = {
	    {"Host", "t", 0},
	    {"Transfer-Encoding", "chunked", 0},
	    {"Transfer-Encoding", "chunked", 0}};
	const struct policy_field no_value[] = {{"Host", NULL, 0}};

	v = policy_check_head("HTTP/1.1", cl, 2, &fr);
	ok(v.status == 0 && fr.sized && fr.length == 42 && !fr.chunked,
	   "Content-Length 42 (any case): sized, 42");
	v = policy_check_head("HTTP/1.1", te, 2, &fr);
	ok(v.status == 0 && fr.chunked && !fr.sized, "Chunked: chunked");
	v = policy_check_head("HTTP/1.0", te, 2, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail, "Transfer-Encoding in an HTTP/1.0 request") ==
	           0,
	   "Transfer-Encoding on HTTP/1.0: %s", v.detail);
	v = policy_check_head("HTTP/1.1", both, 3, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail, "both Content-Length and Transfer-Encoding") ==
	           0,
	   "Content-Length + Transfer-Encoding: %s", v.detail);
	v = policy_check_head("HTTP/1.1", differ, 3, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail, "Content-Length headers that differ") == 0,
	   "differing Content-Lengths: %s", v.detail);
	v = policy_check_head("HTTP/1.1", same, 3, &fr);
	ok(v.status == 0 && fr.length == 2, "equal Content-Lengths: accepted");
	v = policy_check_head("HTTP/1.1", bad_len, 2, &fr);
	ok(v.status == 400 && strcmp(v.detail, "invalid Content-Length") == 0,
	   "Content-Length +2: %s", v.detail);
	v = policy_check_head("HTTP/1.1", two_te, 3, &fr);
	is(v.status, 501, "two Transfer-Encodings: 501");
	v = policy_check_head("HTTP/1.1", no_value, 1, &fr);
	ok(v.status == 0 && !fr.sized && !fr.chunked,
	   "a field with no value is taken as empty");
	v = policy_check_head("HTTP/1.1", NULL, 0, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail, "an HTTP/1.1 request without Host") == 0,
	   "HTTP/1.1 without Host: %s", v.detail);
	v = policy_check_head("HTTP/1.0", NULL, 0, &fr);
	is(v.status, 0, "HTTP/1.0 without Host: accepted");
}

static const struct host_case {
	const char *value;
	int valid;
} host_cases[] = {
    {"t", 1},
    {"", 1},
    {"example.com:8080", 1},
    {"127.0.0.1", 1},
    {"[::1]", 1},
    {"[::1]:80", 1},
    {"a%41b", 1},
    {"x_y~z!$&'()*+,;=", 1},
    {"a b/c", 0},
    {"u@t", 0},
    {"t:8x", 0},
    {"t:80:80", 0},
    {"[::1", 0},
    {"[::1]x", 0},
    {"a%4", 0},
    {"a%zz", 0},
    {"t/x", 0},
    {"t\x01", 0},
    {"t\x80", 0},
    {"t?", 0},
};

static void
test_policy_fields(void)
{
	struct policy_framing fr;
	struct policy_verdict v;
	struct policy_field folded[] = {{"Host", "t", 0},
	                                {"Content-Length", "35", 1}};
	struct policy_field cr[] = {{"Host", "t", 0},
	                            {"X-A", "a\rContent-Length: 5", 0}};
	struct policy_field ctl[] = {{"Host", "t", 0}, {"X-A", "a\x01\tb", 0}};

	v = policy_check_head("HTTP/1.1", folded, 2, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail,
	              "obs-fold: a header field continued on the next line") ==
	           0,
	   "a field marked folded, even with a good name: %s", v.detail);
	v = policy_check_trailers(folded + 1, 1);
	ok(v.status == 400 && strncmp(v.detail, "obs-fold", 8) == 0,
	   "a folded trailer: %s", v.detail);
	v = policy_check_head("HTTP/1.1", cr, 2, &fr);
	ok(v.status == 400 &&
	       strcmp(v.detail, "a CR in a header field value") == 0,
	   "a bare CR in a value: %s", v.detail);
	v = policy_check_head("HTTP/1.1", ctl, 2, &fr);
	is(v.status, 0,
	   "other control bytes in a value are kept (escaped "
	   "when logged)");
	for (size_t i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]);
	     i++) {
		struct policy_field f = {"Host", host_cases[i].value, 0};

		v = policy_check_head("HTTP/1.1", &f, 1, &fr);
		ok(host_cases[i].valid
		       ? v.status == 0
		       : v.status == 400 &&
		             strcmp(v.detail, "invalid Host header") == 0,
		   "Host '%s': %s", host_cases[i].value,
		   v.status == 0 ? "accepted" : v.detail);
	}
}

static void
test_policy_trailers(void)
{
	const struct policy_field good[] = {{"X-Checksum", "abc", 0}};
	const char *const framing[] = {"Content-Length", "transfer-encoding",
	                               "HOST"};
	struct policy_verdict v = policy_check_trailers(good, 1);

	is(v.status, 0, "a trailer with a token name: accepted");
	for (size_t i = 0; i < 3; i++) {
		struct policy_field f = {framing[i], "5", 0};

		v = policy_check_trailers(&f, 1);
		ok(v.status == 400 &&
		       strcmp(v.detail,
		              "a framing header in the trailer section") == 0,
		   "%s as a trailer: refused", framing[i]);
	}
}

static const struct target_case {
	const char *target;
	const char *path; /* decoded, when accepted */
	const char *detail;
} target_cases[] = {
    {"/health", "/health", NULL},
    {"/health?x=1&y=%41", "/health", NULL},
    {"/%68ealth", "/health", NULL},
    {"/a%2Fb", "/a/b", NULL},
    {"/a%20b%e2%82%ac", "/a b\xe2\x82\xac", NULL},
    {"http://t/health", "/health", NULL},
    {"HTTPS://t:8443/health?q", "/health", NULL},
    {"http://t", "/", NULL},
    {"http://t?x=1", "/", NULL},
    {"*", "*", NULL},
    {"t:443", "t:443", NULL},
    {"", "", NULL},
    {"/x?a=%0A", "/x", NULL}, /* a decoded newline in a query value */
    {"/metrics%00.css", NULL, "a control byte in the request path"},
    {"/health%00/../admin", NULL, "a control byte in the request path"},
    {"/a%0a", NULL, "a control byte in the request path"},
    {"/a%0D", NULL, "a control byte in the request path"},
    {"/a%1f", NULL, "a control byte in the request path"},
    {"/a%7F", NULL, "a control byte in the request path"},
    {"/a\x01", NULL, "a control byte in the request path"},
    {"/a\t", NULL, "a control byte in the request path"},
    {"http://t/a%00", NULL, "a control byte in the request path"},
    {"/a%", NULL, "malformed percent-encoding in the request target"},
    {"/a%4", NULL, "malformed percent-encoding in the request target"},
    {"/a%zz", NULL, "malformed percent-encoding in the request target"},
    {"/a%g0", NULL, "malformed percent-encoding in the request target"},
    {"/x?a=%00", NULL, "a control byte or %00 in the query string"},
    {"/x?a=\x7f", NULL, "a control byte or %00 in the query string"},
    {"/a b", NULL, "a space in the request target"},
    {"/a?b c", NULL, "a space in the request target"},
    {"http://t\x01x/health", NULL, "invalid authority in the request target"},
    {"http://u@t/health", NULL, "invalid authority in the request target"},
    {"http:///health", NULL, "invalid authority in the request target"},
    {"http://[::1]:8080/x", "/x", NULL},
};

static void
test_policy_target(void)
{
	for (size_t i = 0; i < sizeof(target_cases) / sizeof(target_cases[0]);
	     i++) {
		const struct target_case *c = &target_cases[i];
		char path[64];
		struct policy_verdict v =
		    policy_decode_target(c->target, path, sizeof(path));

		if (c->detail == NULL)
			ok(v.status == 0 && strcmp(path, c->path) == 0,
			   "target '%s' -> '%s'", c->target,
			   v.status == 0 ? path : v.detail);
		else
			ok(v.status == 400 && strcmp(v.detail, c->detail) == 0,
			   "target '%s' -> 400 %s", c->target,
			   v.detail != NULL ? v.detail : "(accepted)");
	}
	{
		char out[8];

		is(policy_percent_decode("a%41%2f+", 8, out, sizeof(out)), 4,
		   "percent-decoding: 8 bytes to 4");
		ok(memcmp(out, "aA/+", 4) == 0, "'+' stays, hex in any case");
		is(policy_percent_decode("%4", 2, out, sizeof(out)), -1,
		   "a cut-off escape is malformed");
		is(policy_percent_decode("%g0", 3, out, sizeof(out)), -1,
		   "a non-hex escape is malformed");
		is(policy_percent_decode("abcdef", 6, out, 2), 6,
		   "the length is returned past cap");
	}
	is_str(policy_target_path("http://h:80/a/b"), "/a/b",
	       "the path of an absolute-form target");
	is_str(policy_target_path("/a/b"), "/a/b", "of an origin-form one");
	ok(strcmp(policy_target_path_end("/a?b?c"), "?b?c") == 0 &&
	       *policy_target_path_end("/a") == '\0',
	   "the path ends at the first '?' or at the end");
}

static void
test_policy_json_cost(void)
{
	static const char ok_body[] = "{\"name\":\"microd\",\"tags\":[1,2]}";
	char dense[4096], strings[4096];
	struct policy_verdict v;

	v = policy_json_cost(ok_body, strlen(ok_body));
	is(v.status, 0, "a small object: accepted (64 values free)");
	memset(dense, 0, sizeof(dense));
	dense[0] = '[';
	for (size_t i = 1; i + 2 < sizeof(dense); i += 2) {
		dense[i] = '0';
		dense[i + 1] = ',';
	}
	v = policy_json_cost(dense, sizeof(dense) - 2);
	ok(v.status == 413 &&
	       strstr(v.detail, "more values than its size allows") != NULL,
	   "a value every 2 bytes over 4 KiB: 413 %s", v.detail);
	v = policy_json_cost(dense, 128);
	is(v.status, 0, "the same density within the 64 free values");
	/* Commas inside strings are no values; an escaped quote does not
	 * end the string. */
	memset(strings, ',', sizeof(strings));
	strings[0] = '[';
	strings[1] = '"';
	strings[2] = '\\';
	strings[3] = '"';
	strings[sizeof(strings) - 2] = '"';
	strings[sizeof(strings) - 1] = ']';
	v = policy_json_cost(strings, sizeof(strings));
	is(v.status, 0, "4 KiB of commas inside one string: accepted");
}

static void
test_number(void)
{
	uintmax_t v = 7;

	ok(number_parse("0", 10, &v) == 0 && v == 0, "0");
	ok(number_parse("10", 10, &v) == 0 && v == 10, "10 with max 10");
	ok(number_parse("11", 10, &v) != 0 && v == 10, "11 over max 10");
	ok(number_parse("18446744073709551615", UINTMAX_MAX, &v) == 0 &&
	       v == UINTMAX_MAX,
	   "2^64-1");
	ok(number_parse("18446744073709551616", UINTMAX_MAX, &v) != 0,
	   "2^64 overflows");
	ok(number_parse("", 10, &v) != 0 && number_parse(NULL, 10, &v) != 0,
	   "empty and NULL");
	ok(number_parse("+1", 10, &v) != 0 && number_parse("-1", 10, &v) != 0 &&
	       number_parse(" 1", 10, &v) != 0 &&
	       number_parse("1 ", 10, &v) != 0 &&
	       number_parse("0x1", 10, &v) != 0,
	   "sign, space, trailing junk and hex are refused");
}

/* ?queries= of /queries and /updates, clamped as the benchmark says. */
static const struct world_case {
	const char *value; /* NULL: absent */
	unsigned int n;
} world_cases[] = {
    {NULL, 1},
    {"", 1},
    {"foo", 1},
    {"7x", 1},
    {"-3", 1},
    {"+3", 1},
    {" 3", 1},
    {"0x10", 1},
    {"0", 1},
    {"1", 1},
    {"20", 20},
    {"007", 7},
    {"499", 499},
    {"500", 500},
    {"501", 500},
    {"99999999999999999999999", 500},
    {"18446744073709551616", 500},
};

static void
test_world_queries(void)
{
	for (size_t i = 0; i < sizeof(world_cases) / sizeof(world_cases[0]);
	     i++) {
		const struct world_case *c = &world_cases[i];

		is(world_queries(c->value), c->n, "queries=%s: %u",
		   c->value != NULL ? c->value : "(absent)", c->n);
	}
}

/* Rate limits: the bucket arithmetic, the table, the client's key. */
static const unsigned char rl_seed[RATELIMIT_SEED_LEN] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

#define RL_T0 (1000 * 1000000000LL) /* a "now" 1000 s after boot */
#define RL_MS 1000000LL

/* The IPv4-mapped address 100.0.0.0 + n, n < 2^24: one key per n. */
static void
rl_key(unsigned char k[RATELIMIT_KEY_LEN], unsigned int n)
{
	memset(k, 0, RATELIMIT_KEY_LEN);
	k[10] = 0xff;
	k[11] = 0xff;
	k[12] = 100;
	k[13] = (unsigned char)(n >> 16);
	k[14] = (unsigned char)(n >> 8);
	k[15] = (unsigned char)n;
}

/* One request; its verdict against the one wanted, as one test. */
static void
rl_take_is(struct ratelimit *rl, const unsigned char *key, long long now,
           int allowed, unsigned int remaining, long long reset_s,
           long long retry_s, const char *what)
{
	struct ratelimit_verdict v;
	int r = ratelimit_take(rl, key, now, &v);
	int good = r == allowed && v.allowed == allowed &&
	           v.remaining == remaining && v.reset_s == reset_s &&
	           v.retry_after_s == retry_s;

	ok(good, "%s: %s, remaining %u, reset %lld s, retry after %lld s", what,
	   v.allowed ? "allowed" : "refused", v.remaining, v.reset_s,
	   v.retry_after_s);
	if (!good)
		diag(
		    "  want %s, remaining %u, reset %lld s, retry after %lld s",
		    allowed ? "allowed" : "refused", remaining, reset_s,
		    retry_s);
}

/* Takes n times at now; returns how many were allowed. */
static unsigned int
rl_take_n(struct ratelimit *rl, const unsigned char *key, long long now,
          unsigned int n)
{
	unsigned int allowed = 0;

	for (unsigned int i = 0; i < n; i++)
		allowed += (unsigned int)ratelimit_take(rl, key, now, NULL);
	return allowed;
}

static void
test_ratelimit_new(void)
{
	static const struct {
		double rate;
		unsigned int burst;
		size_t slots;
		const char *why;
	} bad[] = {
	    {0, 1, 8, "rate 0"},
	    {-1, 1, 8, "a negative rate"},
	    {NAN, 1, 8, "rate NaN"},
	    {INFINITY, 1, 8, "an infinite rate"},
	    {0.0009, 1, 8, "a rate under 0.001/s"},
	    {1000001, 1, 8, "a rate over 1e6/s"},
	    {10, 0, 8, "burst 0"},
	    {10, RATELIMIT_BURST_MAX + 1, 8, "a burst over the maximum"},
	    {10, 1, 0, "0 slots"},
	    {10, 1, RATELIMIT_SLOTS_MAX + 1, "slots over the maximum"},
	};
	struct ratelimit *rl;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		rl = ratelimit_new(bad[i].rate, bad[i].burst, bad[i].slots,
		                   rl_seed);
		ok(rl == NULL && errno == EINVAL, "ratelimit_new refuses %s",
		   bad[i].why);
		ratelimit_free(rl);
	}
	rl = ratelimit_new(RATELIMIT_RATE_MIN, RATELIMIT_BURST_MAX, 1, rl_seed);
	ok(rl != NULL && ratelimit_slots(rl) == 8,
	   "rate 0.001/s, the largest burst, 1 slot: made, with 8 slots");
	ratelimit_free(rl);
	rl = ratelimit_new(RATELIMIT_RATE_MAX, 1, 9, rl_seed);
	ok(rl != NULL && ratelimit_slots(rl) == 16,
	   "rate 1e6/s, 9 slots: made, with 16 slots");
	ratelimit_free(rl);
	ratelimit_free(NULL);
}

static void
test_ratelimit_bucket(void)
{
	unsigned char a[RATELIMIT_KEY_LEN];
	struct ratelimit *rl;
	struct ratelimit_verdict v;
	unsigned int n;

	rl_key(a, 1);
	/* T = 100 ms, burst * T = 300 ms. */
	rl = ratelimit_new(10, 3, 8, rl_seed);
	if (rl == NULL) {
		ok(0, "ratelimit_new(10, 3)");
		return;
	}
	rl_take_is(rl, a, RL_T0, 1, 2, 1, 0, "10/s burst 3: 1st");
	rl_take_is(rl, a, RL_T0, 1, 1, 1, 0, "10/s burst 3: 2nd");
	rl_take_is(rl, a, RL_T0, 1, 0, 1, 0, "10/s burst 3: 3rd");
	rl_take_is(rl, a, RL_T0, 0, 0, 1, 1, "10/s burst 3: 4th");
	rl_take_is(rl, a, RL_T0 + 100 * RL_MS - 1, 0, 0, 1, 1,
	           "1 ns short of 100 ms later");
	rl_take_is(rl, a, RL_T0 + 100 * RL_MS, 1, 0, 1, 0,
	           "exactly 100 ms later: one more");
	rl_take_is(rl, a, RL_T0 + 100 * RL_MS, 0, 0, 1, 1, "and no more");
	/* A caller whose now is behind another's: refused, without a wrap. */
	rl_take_is(rl, a, RL_T0 - 1000 * RL_MS, 0, 0, 2, 2,
	           "a now 1 s behind the last");
	rl_take_is(rl, a, RL_T0 + 400 * RL_MS, 1, 2, 1, 0,
	           "300 ms after the debt was full: 1st of 3 again");
	rl_take_is(rl, a, RL_T0 + 400 * RL_MS, 1, 1, 1, 0, "2nd of 3 again");
	rl_take_is(rl, a, RL_T0 + 400 * RL_MS, 1, 0, 1, 0, "3rd of 3 again");
	rl_take_is(rl, a, RL_T0 + 400 * RL_MS, 0, 0, 1, 1, "4th refused");
	ratelimit_free(rl);

	/* T = 2.5 s: reset and retry round up, and not past a whole second. */
	rl = ratelimit_new(0.4, 2, 8, rl_seed);
	if (rl != NULL) {
		rl_take_is(rl, a, RL_T0, 1, 1, 3, 0, "0.4/s burst 2: 1st");
		rl_take_is(rl, a, RL_T0, 1, 0, 5, 0, "0.4/s burst 2: 2nd");
		rl_take_is(rl, a, RL_T0, 0, 0, 5, 3, "0.4/s burst 2: 3rd");
		rl_take_is(rl, a, RL_T0 + 2500 * RL_MS, 1, 0, 5, 0,
		           "0.4/s: 2.5 s later one more");
	}
	ratelimit_free(rl);

	rl = ratelimit_new(0.5, 1, 8, rl_seed);
	if (rl != NULL) {
		rl_take_is(rl, a, RL_T0, 1, 0, 2, 0, "0.5/s burst 1: 1st");
		rl_take_is(rl, a, RL_T0, 0, 0, 2, 2, "0.5/s burst 1: 2nd");
		rl_take_is(rl, a, RL_T0 + 2000 * RL_MS - 1, 0, 0, 1, 1,
		           "0.5/s: 1 ns short of 2 s: retry after 1 s");
		rl_take_is(rl, a, RL_T0 + 2000 * RL_MS, 1, 0, 2, 0,
		           "0.5/s: 2 s later");
	}
	ratelimit_free(rl);

	/* T = 1 us. */
	rl = ratelimit_new(1e6, 1, 8, rl_seed);
	if (rl != NULL) {
		rl_take_is(rl, a, RL_T0, 1, 0, 1, 0, "1e6/s burst 1: 1st");
		rl_take_is(rl, a, RL_T0, 0, 0, 1, 1, "1e6/s burst 1: 2nd");
		rl_take_is(rl, a, RL_T0 + 1000, 1, 0, 1, 0,
		           "1e6/s: 1 us later");
	}
	ratelimit_free(rl);
	rl = ratelimit_new(1e6, 1000000, 8, rl_seed);
	if (rl != NULL) {
		n = rl_take_n(rl, a, RL_T0, 999999);
		is(n, 999999, "1e6/s burst 1e6: 999999 at once");
		rl_take_is(rl, a, RL_T0, 1, 0, 1, 0,
		           "the millionth: a debt of exactly 1 s");
		rl_take_is(rl, a, RL_T0, 0, 0, 1, 1, "and no more");
	}
	ratelimit_free(rl);

	/* T = 1000 s, burst * T = 1e18 ns, at the end of the clock. */
	rl = ratelimit_new(0.001, 1, 8, rl_seed);
	if (rl != NULL) {
		rl_take_is(rl, a, RL_T0, 1, 0, 1000, 0, "0.001/s burst 1: 1st");
		rl_take_is(rl, a, RL_T0, 0, 0, 1000, 1000,
		           "0.001/s burst 1: retry after 1000 s");
		rl_take_is(rl, a, RL_T0 + 999 * 1000000000LL, 0, 0, 1, 1,
		           "0.001/s: 999 s later, 1 s to go");
		rl_take_is(rl, a, RL_T0 + 1000 * 1000000000LL, 1, 0, 1000, 0,
		           "0.001/s: 1000 s later");
	}
	ratelimit_free(rl);
	rl = ratelimit_new(0.001, RATELIMIT_BURST_MAX, 8, rl_seed);
	if (rl != NULL) {
		n = rl_take_n(rl, a, LLONG_MAX, RATELIMIT_BURST_MAX - 1);
		is(n, RATELIMIT_BURST_MAX - 1,
		   "0.001/s burst 1e6 at now LLONG_MAX: all but one allowed");
		rl_take_is(rl, a, LLONG_MAX, 1, 0, 1000000000LL, 0,
		           "the last: a debt of 1e9 s, no overflow");
		rl_take_is(rl, a, LLONG_MAX, 0, 0, 1000000000LL, 1000,
		           "then refused for 1000 s");
		rl_key(a, 2);
		n = (unsigned int)ratelimit_take(rl, a, LLONG_MIN, &v);
		ok(n == 1 && v.remaining == RATELIMIT_BURST_MAX - 1 &&
		       v.reset_s == 1000,
		   "now LLONG_MIN counts as 0: remaining %u, reset %lld s",
		   v.remaining, v.reset_s);
	}
	ratelimit_free(rl);
}

static void
test_ratelimit_evict(void)
{
	unsigned char k[10][RATELIMIT_KEY_LEN], a[RATELIMIT_KEY_LEN];
	unsigned long long total = 99, debt = 99;
	struct ratelimit *rl;
	unsigned int i, n;
	size_t set;

	for (i = 0; i < 10; i++)
		rl_key(k[i], i);
	/* One set of 8; T = 100 ms. k3 is the least in debt, then k5. */
	rl = ratelimit_new(10, 3, 8, rl_seed);
	if (rl == NULL) {
		ok(0, "ratelimit_new(10, 3, 8)");
		return;
	}
	for (i = 0; i < 8; i++)
		rl_take_n(rl, k[i], RL_T0, i == 3 ? 1 : i == 5 ? 2 : 3);
	ratelimit_stats(rl, &total, &debt);
	ok(total == 0 && debt == 0, "8 keys in 8 slots: no eviction (%llu)",
	   total);
	rl_take_is(rl, k[8], RL_T0, 1, 2, 1, 0, "a 9th key: a full bucket");
	ratelimit_stats(rl, &total, &debt);
	ok(total == 1 && debt == 1,
	   "it evicted one in debt: %llu evicted, %llu in debt", total, debt);
	n = 0;
	for (i = 0; i < 8; i++)
		if (i != 3 && i != 5)
			n +=
			    (unsigned int)ratelimit_take(rl, k[i], RL_T0, NULL);
	is(n, 0, "the 6 keys deepest in debt kept their state");
	rl_take_is(rl, k[5], RL_T0, 1, 0, 1, 0,
	           "the next least in debt kept its state");
	rl_take_is(rl, k[3], RL_T0, 1, 2, 1, 0,
	           "the least in debt was the one evicted: back full");
	ratelimit_stats(rl, &total, &debt);
	ok(total == 2 && debt == 2,
	   "coming back evicted the 9th key: %llu/%llu", total, debt);
	/* 100 ms on, k3's bucket (TAT = now) is full again; the rest are in
	 * debt. */
	rl_take_is(rl, k[9], RL_T0 + 100 * RL_MS, 1, 2, 1, 0,
	           "a 10th key when one bucket has refilled");
	ratelimit_stats(rl, &total, &debt);
	ok(total == 3 && debt == 2,
	   "the full bucket went, not counted in debt: %llu/%llu", total, debt);
	n = (unsigned int)ratelimit_take(rl, k[0], RL_T0 + 100 * RL_MS, NULL);
	n += (unsigned int)ratelimit_take(rl, k[0], RL_T0 + 100 * RL_MS, NULL);
	is(n, 1, "a key in debt kept its state (one request refilled, not 3)");
	ratelimit_free(rl);

	/* 64 slots, 100000 clients: nothing grows, the deepest debt stays. */
	rl = ratelimit_new(10, 3, 64, rl_seed);
	if (rl == NULL) {
		ok(0, "ratelimit_new(10, 3, 64)");
		return;
	}
	rl_key(a, 0);
	rl_take_n(rl, a, RL_T0, 3);
	for (i = 1; i <= 100000; i++) {
		rl_key(k[0], i);
		rl_take_n(rl, k[0], RL_T0 + RL_MS, 1);
	}
	is(ratelimit_slots(rl), 64, "100000 keys later: still 64 slots");
	ok(ratelimit_take(rl, a, RL_T0 + RL_MS, NULL) == 0,
	   "a key deeper in debt than all of them kept its state");
	for (i = 1; i <= 100000; i++) {
		rl_key(k[0], i + 100000);
		rl_take_n(rl, k[0], RL_T0 + RL_MS, 3);
	}
	rl_take_is(rl, a, RL_T0 + RL_MS, 1, 2, 1, 0,
	           "after 100000 deeper in debt: evicted, back full");
	ratelimit_stats(rl, &total, &debt);
	ok(total == 200001 - 64 + 1 && debt == total,
	   "every insert past 64 evicted one in debt: %llu/%llu", total, debt);
	ratelimit_free(rl);

	/* 128 sets: keys in other sets never touch a key's state. */
	rl = ratelimit_new(10, 3, 1024, rl_seed);
	if (rl == NULL) {
		ok(0, "ratelimit_new(10, 3, 1024)");
		return;
	}
	rl_key(a, 0);
	rl_key(k[1], 1);
	rl_take_n(rl, a, RL_T0, 3);
	rl_take_n(rl, k[1], RL_T0, 3);
	ok(ratelimit_take(rl, a, RL_T0, NULL) == 0 &&
	       ratelimit_take(rl, k[1], RL_T0, NULL) == 0,
	   "2 keys in 1024 slots: both keep their state");
	set = ratelimit_set_of(rl, a);
	n = 0;
	for (i = 2; n < 20000 && i < 1000000; i++) {
		rl_key(k[0], i);
		if (ratelimit_set_of(rl, k[0]) == set)
			continue;
		rl_take_n(rl, k[0], RL_T0 + RL_MS, 3);
		n++;
	}
	ok(n == 20000 && ratelimit_take(rl, a, RL_T0 + RL_MS, NULL) == 0,
	   "%u keys deeper in debt in the other sets: the state stays", n);
	for (i = 2, n = 0; n < 8 && i < 1000000; i++) {
		rl_key(k[0], i);
		if (ratelimit_set_of(rl, k[0]) != set)
			continue;
		rl_take_n(rl, k[0], RL_T0 + RL_MS, 3);
		n++;
	}
	rl_take_is(rl, a, RL_T0 + RL_MS, 1, 2, 1, 0,
	           "8 deeper in debt in its own set: evicted, back full");
	ratelimit_free(rl);
}

/* Threads that race for one key's bucket, started together. */
#define RL_THREADS 8
#define RL_THREAD_TAKES 100000u

struct rl_thread {
	struct ratelimit *rl;
	pthread_barrier_t *start;
	unsigned int allowed;
};

static void *
rl_thread_main(void *arg)
{
	struct rl_thread *t = arg;
	unsigned char k[RATELIMIT_KEY_LEN];
	int r;

	rl_key(k, 7);
	r = pthread_barrier_wait(t->start);
	if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD)
		return NULL;
	t->allowed = rl_take_n(t->rl, k, RL_T0, RL_THREAD_TAKES);
	return NULL;
}

static void
test_ratelimit_threads(void)
{
	const unsigned int burst = RL_THREADS * RL_THREAD_TAKES / 2;
	struct rl_thread t[RL_THREADS];
	pthread_t tid[RL_THREADS];
	pthread_barrier_t start;
	unsigned int allowed = 0, started = 0, joined = 0;
	struct ratelimit *rl = ratelimit_new(1, burst, 64, rl_seed);

	if (rl == NULL || pthread_barrier_init(&start, NULL, RL_THREADS) != 0) {
		ok(0, "ratelimit_new(1, %u, 64) and a barrier", burst);
		ratelimit_free(rl);
		return;
	}
	for (; started < RL_THREADS; started++) {
		t[started].rl = rl;
		t[started].start = &start;
		t[started].allowed = 0;
		if (pthread_create(&tid[started], NULL, rl_thread_main,
		                   &t[started]) != 0)
			break;
	}
	/* Fewer threads than the barrier's count would wait forever. */
	if (started < RL_THREADS) {
		ok(0, "started only %u threads", started);
		exit(1);
	}
	for (unsigned int i = 0; i < started; i++) {
		if (pthread_join(tid[i], NULL) == 0) {
			allowed += t[i].allowed;
			joined++;
		}
	}
	ok(joined == RL_THREADS && allowed == burst,
	   "%u threads racing for one key, burst %u: %u allowed", joined, burst,
	   allowed);
	pthread_barrier_destroy(&start);
	ratelimit_free(rl);
}

static void
test_ratelimit(void)
{
	test_ratelimit_new();
	test_ratelimit_bucket();
	test_ratelimit_evict();
	test_ratelimit_threads();
}

static const struct cidr_case {
	const char *s;
	const char *addr;    /* accepted: its address, as text */
	unsigned int prefix; /* and prefix, IPv4 + 96 */
	const char *why;     /* refused: the reason */
} cidr_cases[] = {
    {"10.0.0.0/8", "10.0.0.0", 104, NULL},
    {"192.168.1.7", "192.168.1.7", 128, NULL},
    {"192.168.1.7/32", "192.168.1.7", 128, NULL},
    {"172.16.0.0/12", "172.16.0.0", 108, NULL},
    {"0.0.0.0/0", "0.0.0.0", 96, NULL},
    {"10.0.0.0/008", "10.0.0.0", 104, NULL},
    {"::1/128", "::1", 128, NULL},
    {"::1", "::1", 128, NULL},
    {"fd00::/8", "fd00::", 8, NULL},
    {"fe80::/10", "fe80::", 10, NULL},
    {"2001:db8::/32", "2001:db8::", 32, NULL},
    {"::/0", "::", 0, NULL},
    {"::ffff:10.0.0.0/104", "10.0.0.0", 104, NULL},
    {"", NULL, 0, "empty"},
    {"garbage", NULL, 0, "not an IPv4 or IPv6 address"},
    {"/8", NULL, 0, "not an IPv4 or IPv6 address"},
    {"10.0.0/8", NULL, 0, "not an IPv4 or IPv6 address"},
    {"10.0.0.256/32", NULL, 0, "not an IPv4 or IPv6 address"},
    {" 10.0.0.0/8", NULL, 0, "not an IPv4 or IPv6 address"},
    {"10.0.0.0 /8", NULL, 0, "not an IPv4 or IPv6 address"},
    {"[::1]/128", NULL, 0, "not an IPv4 or IPv6 address"},
    {"fd00::%eth0/8", NULL, 0, "not an IPv4 or IPv6 address"},
    {"10.0.0.0/", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/+8", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/-8", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/ 8", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/8 ", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/0008", NULL, 0,
     "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/0x8", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/8/8", NULL, 0, "the prefix length is not 1 to 3 decimal digits"},
    {"10.0.0.0/33", NULL, 0, "an IPv4 prefix length over 32"},
    {"::/129", NULL, 0, "an IPv6 prefix length over 128"},
    {"10.0.0.1/8", NULL, 0, "host bits set past the prefix length"},
    {"11.0.0.0/7", NULL, 0, "host bits set past the prefix length"},
    {"10.0.0.0/7", "10.0.0.0", 103, NULL},
    {"fd00::1/8", NULL, 0, "host bits set past the prefix length"},
    {"fe80::/8", NULL, 0, "host bits set past the prefix length"},
    {"fe80::/9", "fe80::", 9, NULL},
};

static const struct addr_case {
	const char *s;
	size_t n;         /* 0: strlen(s) */
	const char *want; /* NULL: refused */
} addr_cases[] = {
    {"1.2.3.4", 0, "::ffff:1.2.3.4"},
    {"::1", 0, "::1"},
    {"[::1]", 0, "::1"},
    {"[2001:db8::1]", 0, "2001:db8::1"},
    {"::ffff:1.2.3.4", 0, "::ffff:1.2.3.4"},
    {"1.2.3.4, 5.6.7.8", 7, "::ffff:1.2.3.4"},
    {"[1.2.3.4]", 0, NULL},
    {"1.2.3.4:80", 0, NULL},
    {"[::1]:80", 0, NULL},
    {"[::1", 0, NULL},
    {"::1]", 0, NULL},
    {"[]", 0, NULL},
    {"[", 0, NULL},
    {"", 0, NULL},
    {" 1.2.3.4", 0, NULL},
    {"1.2.3.4\0", 8, NULL},
    {"fe80::1%eth0", 0, NULL},
    {"unknown", 0, NULL},
    {"0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:"
     "0000:0000:0000:0000",
     0, NULL}, /* 89 bytes: past the buffer */
};

static const struct xff_case {
	const char *why, *peer;
	const char *xff; /* its lines, a '\n' between them; NULL: none */
	const char *want;
} xff_cases[] = {
    {"untrusted peer: XFF ignored", "203.0.113.9", "1.2.3.4", "203.0.113.9"},
    {"untrusted peer, XFF of proxies", "203.0.113.9", "10.0.0.2",
     "203.0.113.9"},
    {"untrusted IPv6 peer", "2001:db8::9", "1.2.3.4", "2001:db8::9"},
    {"just past a single trusted host", "192.168.1.8", "1.2.3.4",
     "192.168.1.8"},
    {"just past a /12", "172.32.0.1", "1.2.3.4", "172.32.0.1"},
    {"just before a /12", "172.15.255.255", "1.2.3.4", "172.15.255.255"},
    {"the top of a /12", "172.31.255.255", "1.2.3.4", "1.2.3.4"},
    {"just past an IPv6 /10", "fec0::1", "1.2.3.4", "fec0::1"},
    {"the top of an IPv6 /10", "febf:ffff::1", "1.2.3.4", "1.2.3.4"},
    {"trusted peer, no XFF", "10.0.0.1", NULL, "10.0.0.1"},
    {"trusted peer, one client", "10.0.0.1", "1.2.3.4", "1.2.3.4"},
    {"a single trusted host as peer", "192.168.1.7", "1.2.3.4", "1.2.3.4"},
    {"a chain of proxies", "10.0.0.1", "1.2.3.4, 10.0.0.2, 10.0.0.3",
     "1.2.3.4"},
    {"the rightmost untrusted, not a spoofed leftmost", "10.0.0.1",
     "6.6.6.6, 1.2.3.4, 10.0.0.2", "1.2.3.4"},
    {"garbage in the middle: the proxy right of it", "10.0.0.1",
     "1.2.3.4, garbage, 10.0.0.2, 10.0.0.3", "10.0.0.2"},
    {"unknown rightmost: the peer", "10.0.0.1", "1.2.3.4, unknown", "10.0.0.1"},
    {"an empty entry is skipped (RFC 9110)", "10.0.0.1", "1.2.3.4,,10.0.0.2",
     "1.2.3.4"},
    {"a trailing comma is skipped", "10.0.0.1", "1.2.3.4,", "1.2.3.4"},
    {"an empty line is skipped", "10.0.0.1", "1.2.3.4\n", "1.2.3.4"},
    {"only empty entries: the peer", "10.0.0.1", " , ,", "10.0.0.1"},
    {"an entry of blanks is skipped", "10.0.0.1", "1.2.3.4, \t ,10.0.0.2",
     "1.2.3.4"},
    {"an address with a port is garbage", "10.0.0.1", "1.2.3.4:5678, 10.0.0.2",
     "10.0.0.2"},
    {"a space inside an entry is garbage", "10.0.0.1", "1.2. 3.4", "10.0.0.1"},
    {"all trusted: the leftmost", "10.0.0.1", "10.0.0.5, 10.0.0.2", "10.0.0.5"},
    {"all trusted over lines: the leftmost", "10.0.0.1",
     "10.0.0.5\n192.168.1.7, 10.0.0.2", "10.0.0.5"},
    {"two lines: the last line is the rightmost", "10.0.0.1",
     "1.2.3.4\n5.6.7.8", "5.6.7.8"},
    {"two lines, proxies in the second", "10.0.0.1",
     "6.6.6.6, 1.2.3.4\n10.0.0.2, 10.0.0.3", "1.2.3.4"},
    {"three lines, garbage in the first", "10.0.0.1",
     "junk\n10.0.0.4\n10.0.0.2", "10.0.0.4"},
    {"spaces and tabs around entries", "10.0.0.1",
     " \t1.2.3.4\t ,  10.0.0.2 \t", "1.2.3.4"},
    {"IPv6 peer and client", "fd00::1", "2001:db8::1", "2001:db8::1"},
    {"bracketed IPv6 behind an IPv6 proxy", "fd00::1", "[2001:db8::2], fd00::5",
     "2001:db8::2"},
    {"IPv4 client behind an IPv6 proxy", "fd00::1", "1.2.3.4, fd00::2",
     "1.2.3.4"},
    {"IPv4-mapped peer in an IPv4 block", "::ffff:10.0.0.1", "1.2.3.4",
     "1.2.3.4"},
    {"IPv4-mapped IPv6 text is a trusted IPv4 address", "10.0.0.1",
     "1.2.3.4, ::ffff:10.0.0.9", "1.2.3.4"},
};

static void
rl_addr(const char *s, unsigned char out[RATELIMIT_KEY_LEN])
{
	memset(out, 0xee, RATELIMIT_KEY_LEN);
	if (ratelimit_addr_parse(s, strlen(s), out) != 0)
		printf("# bad test address %s\n", s);
}

static const char *
rl_ntop(const unsigned char a[RATELIMIT_KEY_LEN], char *buf, size_t len)
{
	const char *s = inet_ntop(AF_INET6, a, buf, (socklen_t)len);

	return s != NULL ? s : "?";
}

static void
test_client_key(void)
{
	static const char *const trusted_text[] = {
	    "10.0.0.0/8", "fd00::/8", "192.168.1.7", "172.16.0.0/12",
	    "fe80::/10"};
#define N_TRUSTED (sizeof(trusted_text) / sizeof(trusted_text[0]))
	static const unsigned char mapped[RATELIMIT_KEY_LEN] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 0};
	struct cidr trusted[N_TRUSTED], c;
	unsigned char a[RATELIMIT_KEY_LEN], want[RATELIMIT_KEY_LEN];
	char buf[INET6_ADDRSTRLEN];
	const char *why;

	for (size_t i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]);
	     i++) {
		const struct cidr_case *t = &cidr_cases[i];
		int r;

		why = NULL;
		r = ratelimit_parse_cidr(t->s, &c, &why);
		if (t->why != NULL) {
			ok(r == -1 && why != NULL && strcmp(why, t->why) == 0 &&
			       c.prefix == 0,
			   "cidr '%s' refused: %s", t->s,
			   why != NULL ? why : "(accepted)");
			continue;
		}
		rl_addr(t->addr, want);
		ok(r == 0 && c.prefix == t->prefix &&
		       memcmp(c.addr, want, sizeof(want)) == 0,
		   "cidr '%s': %s/%u", t->s, rl_ntop(c.addr, buf, sizeof(buf)),
		   c.prefix);
	}
	why = NULL;
	ok(ratelimit_parse_cidr(NULL, &c, &why) == -1 && why != NULL &&
	       strcmp(why, "empty") == 0,
	   "cidr NULL: empty");
	ok(ratelimit_parse_cidr("10.1.2.0/24", &c, NULL) == 0 &&
	       memcmp(c.addr, mapped, sizeof(mapped)) == 0,
	   "IPv4 is kept as ::ffff:a.b.c.d");

	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]);
	     i++) {
		const struct addr_case *t = &addr_cases[i];
		size_t n = t->n != 0 ? t->n : strlen(t->s);
		int r;

		memset(a, 0, sizeof(a));
		r = ratelimit_addr_parse(t->s, n, a);
		if (t->want == NULL) {
			ok(r == -1, "address '%.*s' (%zu bytes) refused",
			   (int)n, t->s, n);
			continue;
		}
		rl_addr(t->want, want);
		ok(r == 0 && memcmp(a, want, sizeof(want)) == 0,
		   "address '%.*s' (%zu bytes): %s", (int)n, t->s, n,
		   rl_ntop(a, buf, sizeof(buf)));
	}

	for (size_t i = 0; i < N_TRUSTED; i++)
		if (ratelimit_parse_cidr(trusted_text[i], &trusted[i], &why) !=
		    0)
			ok(0, "trusted %s: %s", trusted_text[i], why);
	for (size_t i = 0; i < sizeof(xff_cases) / sizeof(xff_cases[0]); i++) {
		const struct xff_case *t = &xff_cases[i];
		unsigned char peer[RATELIMIT_KEY_LEN];
		char text[128];
		const char *line[4];
		size_t n = 0;

		if (t->xff != NULL) {
			snprintf(text, sizeof(text), "%s", t->xff);
			line[n++] = text;
			for (char *p = text; (p = strchr(p, '\n')) != NULL;) {
				*p++ = '\0';
				if (n < sizeof(line) / sizeof(line[0]))
					line[n++] = p;
			}
		}
		rl_addr(t->peer, peer);
		rl_addr(t->want, want);
		memset(a, 0, sizeof(a));
		ratelimit_client_key(peer, line, n, trusted, N_TRUSTED, a);
		ok(memcmp(a, want, sizeof(want)) == 0, "client key, %s: %s",
		   t->why, rl_ntop(a, buf, sizeof(buf)));
	}
	{
		const char *const lines[] = {"1.2.3.4"};

		rl_addr("10.0.0.1", want);
		ratelimit_client_key(want, lines, 1, NULL, 0, a);
		ok(memcmp(a, want, sizeof(want)) == 0,
		   "client key, nothing trusted: the peer");
	}
#undef N_TRUSTED
}

/* auth_bearer's reading of an Authorization value. */
static const struct bearer_case {
	const char *field, *token; /* token NULL: not AUTH_OK */
	enum auth_verdict want;
} bearers[] = {
    {"Bearer abc", "abc", AUTH_OK},
    {"bearer abc", "abc", AUTH_OK},
    {"BEARER  abc  ", "abc", AUTH_OK},
    {"Bearer abc \t", "abc", AUTH_OK},
    {"Bearer Zm9v+/~._-==", "Zm9v+/~._-==", AUTH_OK},
    {NULL, NULL, AUTH_NONE},
    {"", NULL, AUTH_NONE},
    {"Basic dXNlcjpwYXNz", NULL, AUTH_NONE},
    {"Bearerabc", NULL, AUTH_NONE},
    {"Bearer", NULL, AUTH_MALFORMED},
    {"Bearer ", NULL, AUTH_MALFORMED},
    {"Bearer a b", NULL, AUTH_MALFORMED},
    {"Bearer a,b", NULL, AUTH_MALFORMED},
    {"Bearer =abc", NULL, AUTH_MALFORMED},
    {"Bearer ab=c", NULL, AUTH_MALFORMED},
    {"Bearer a\tb", NULL, AUTH_MALFORMED},
    {"Bearer \"abc\"", NULL, AUTH_MALFORMED},
};

static void
test_auth(void)
{
	unsigned char d[4][32], want[32];
	char big[AUTH_TOKEN_MAX + 16];
	size_t n = 0, line = 0;

	for (size_t i = 0; i < sizeof(bearers) / sizeof(bearers[0]); i++) {
		const struct bearer_case *c = &bearers[i];
		const char *tok = NULL;
		size_t len = 0;
		enum auth_verdict v = auth_bearer(c->field, &tok, &len);

		ok(v == c->want &&
		       (c->token == NULL || (len == strlen(c->token) &&
		                             memcmp(tok, c->token, len) == 0)),
		   "auth_bearer '%s': %d",
		   c->field != NULL ? c->field : "(none)", (int)v);
	}
	snprintf(big, sizeof(big), "Bearer %0*d", AUTH_TOKEN_MAX, 0);
	{
		const char *tok;
		size_t len;

		is(auth_bearer(big, &tok, &len), AUTH_OK,
		   "a token of AUTH_TOKEN_MAX bytes");
		snprintf(big, sizeof(big), "Bearer %0*d", AUTH_TOKEN_MAX + 1,
		         0);
		is(auth_bearer(big, &tok, &len), AUTH_MALFORMED,
		   "one byte longer is malformed");
	}

#define T16 "0123456789abcdef"
	{
		static const char text[] =
		    "# a comment\n\n " T16 "-one \r\n\t" T16 "-two==\n" T16
		    "-three";
		static const char nul[] = T16 "-one\n" T16 "\0-two\n";

		is(auth_parse(text, sizeof(text) - 1, d, 4, &n, &line), 0,
		   "auth_parse: comments, blank lines, spaces, tabs and a CR");
		is(n, 3, "  three tokens");
		gnutls_hash_fast(GNUTLS_DIG_SHA256, T16 "-one", 20, want);
		ok(memcmp(d[0], want, 32) == 0, "  kept as SHA-256 digests");
		gnutls_hash_fast(GNUTLS_DIG_SHA256, T16 "-two==", 22, want);
		ok(memcmp(d[1], want, 32) == 0,
		   "  the second whole, its '='s too");
		is(auth_parse(nul, sizeof(nul) - 1, d, 4, &n, &line), -1,
		   "a NUL byte inside a line is refused");
		is(line, 2, "  on its line (it does not end the text)");
		is(auth_parse("s\0h\0o\0r\0t\0", 10, d, 4, &n, &line), -1,
		   "UTF-16 text is refused, never read as a short token");
	}
	is(auth_parse(T16 "\n0123456789abcde\n", 33, d, 4, &n, &line), -1,
	   "a token of 15 bytes is refused (AUTH_TOKEN_MIN 16)");
	is(line, 2, "  line 2");
	is(auth_parse(T16 "\nbad " T16 "\n", 38, d, 4, &n, &line), -1,
	   "a line with a space inside is refused");
	is(line, 2, "  and named by its number");
	is(auth_parse(T16 "\n#x\nb," T16 "\n", 39, d, 4, &n, &line), -1,
	   "a comma in a token is refused");
	is(line, 3, "  line 3 (comments count)");
	is(auth_parse("# nothing\n\n", 11, d, 4, &n, &line), 0,
	   "a file with no token parses (a reload takes it: all revoked)");
	is(n, 0, "  to no token");
	is(auth_parse(T16 "a\n" T16 "b\n" T16 "c\n" T16 "d\n" T16 "e\n", 90, d,
	              4, &n, &line),
	   -1, "more tokens than room is refused");
	is(n, 4, "  after the room was filled");
	is(line, 0, "  with no line named");
#undef T16
}

/* Status lines as an answer's first bytes: the verdict, and the status. */
static const struct status_line_case {
	const char *bytes;
	size_t len;
	enum outbound_line verdict;
	int status; /* for OK */
} status_line_cases[] = {
#define SL(s) s, sizeof(s) - 1 /* the bytes, NULs included */
    {SL("HTTP/1.1 200 OK\r\n"), OUTBOUND_LINE_OK, 200},
    {SL("HTTP/1.0 204 No Content\r\n"), OUTBOUND_LINE_OK, 204},
    {SL("HTTP/1.1 301 Moved Permanently\r\n"), OUTBOUND_LINE_OK, 301},
    {SL("HTTP/1.1 200 \r\n"), OUTBOUND_LINE_OK, 200},         /* empty reason */
    {SL("HTTP/1.1 200\r\n"), OUTBOUND_LINE_OK, 200},          /* no reason */
    {SL("HTTP/1.1 200\n"), OUTBOUND_LINE_OK, 200},            /* a bare LF */
    {SL("HTTP/1.1 500 X\r\n"), OUTBOUND_LINE_OK, 500},        /* well-formed */
    {SL("HTTP/1.1 100 Continue\r\n"), OUTBOUND_LINE_OK, 100}, /* interim */
    {SL("HTTP/1.1 999 X\r\n"), OUTBOUND_LINE_OK, 999},        /* 3 digits */
    {SL("HTTP/1.1 000 X\r\n"), OUTBOUND_LINE_OK, 0},
    {SL("HTTP/1.1 200\t\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 200999\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 2009 X\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 200\rX\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 200\r\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 20 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 2x0 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1 -20 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1  200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1\t200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.2 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.10 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/2 200\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/2.0 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("http/1.1 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL(" HTTP/1.1 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("\r\nHTTP/1.1 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("ICY 200 OK\r\n"), OUTBOUND_LINE_BAD, 0},
    {SL("HTTP/1.1\0 200 OK"), OUTBOUND_LINE_BAD, 0},
    {SL(""), OUTBOUND_LINE_MORE, 0},
    {SL("HTTP/1.1 200"), OUTBOUND_LINE_MORE, 0}, /* the 13th byte decides */
    {SL("HTTP/1.1 200\r"), OUTBOUND_LINE_MORE, 0},
#undef SL
};

static const char *
line_verdict_name(enum outbound_line v)
{
	return v == OUTBOUND_LINE_OK    ? "ok"
	       : v == OUTBOUND_LINE_BAD ? "bad"
	                                : "more";
}

/*
 * Each status line fed whole, then byte by byte as the bytes so far (one
 * read a byte): no verdict before the byte that decides, that verdict
 * after it whatever follows, and the same as whole.
 */
static void
test_outbound_status_line(void)
{
	for (size_t i = 0;
	     i < sizeof(status_line_cases) / sizeof(status_line_cases[0]);
	     i++) {
		const struct status_line_case *c = &status_line_cases[i];
		size_t n = c->len;
		enum outbound_line whole, first = OUTBOUND_LINE_MORE;
		int status = -1, st = -1, steady = 1;
		char shown[64];
		size_t k = 0;

		for (size_t j = 0; j < n && k + 3 < sizeof(shown); j++) {
			const char *esc = strchr("\r\n\t", c->bytes[j]);

			if (c->bytes[j] != '\0' && esc == NULL) {
				shown[k++] = c->bytes[j];
				continue;
			}
			shown[k++] = '\\';
			shown[k++] = '0';
			if (esc != NULL)
				shown[k - 1] = "rnt"[esc - "\r\n\t"];
		}
		shown[k] = '\0';
		whole = outbound_status_line(c->bytes, n, &status);
		ok(whole == c->verdict &&
		       (whole != OUTBOUND_LINE_OK || status == c->status),
		   "status line '%s' fed whole: %s %d", shown,
		   line_verdict_name(whole), status);
		for (size_t m = 0; m <= n; m++) {
			enum outbound_line v =
			    outbound_status_line(c->bytes, m, &st);

			if (first == OUTBOUND_LINE_MORE)
				first = v;
			else if (v != first)
				steady = 0;
		}
		ok(first == c->verdict && steady &&
		       (first != OUTBOUND_LINE_OK || st == c->status),
		   "  byte by byte: %s %d, %s once decided",
		   line_verdict_name(first), st,
		   steady ? "unchanged" : "CHANGED");
	}
}

static void
test_key_prefix(void)
{
	static const struct {
		const char *in, *want;
	} rows[] = {
	    {"203.0.113.9", "203.0.113.9"},
	    {"::ffff:203.0.113.9", "203.0.113.9"},
	    {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
	    {"2001:db8:1:2::ffff", "2001:db8:1:2::"},
	    {"::1", "::"},
	    {"fe80::1", "fe80::"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		unsigned char a[RATELIMIT_KEY_LEN], want[RATELIMIT_KEY_LEN];
		char buf[INET6_ADDRSTRLEN];

		rl_addr(rows[i].in, a);
		rl_addr(rows[i].want, want);
		ratelimit_key_prefix(a);
		ok(memcmp(a, want, sizeof(a)) == 0,
		   "ratelimit_key_prefix %s: %s", rows[i].in,
		   rl_ntop(a, buf, sizeof(buf)));
	}
}

/* The shape of a note (issue 26), and one with every other kind of row. */
static const struct validate_field vnote_fields[] = {
    {.name = "title",
     .type = VALIDATE_STRING,
     .flags = VALIDATE_REQUIRED,
     .min_chars = 1,
     .max_chars = 200},
    {.name = "body", .type = VALIDATE_STRING, .max_bytes = 4096},
    {.name = "tags",
     .type = VALIDATE_ARRAY,
     .items = VALIDATE_STRING,
     .max_items = 8,
     .min_chars = 1,
     .max_chars = 32},
};
static const struct validate_shape vnote = VALIDATE_SHAPE(vnote_fields);

static const struct validate_field vpoint_fields[] = {
    {.name = "x", .type = VALIDATE_NUMBER, .flags = VALIDATE_REQUIRED},
    {.name = "y", .type = VALIDATE_NUMBER},
};
static const struct validate_shape vpoint = VALIDATE_SHAPE(vpoint_fields);

static const struct validate_field vkind_fields[] = {
    {.name = "count", .type = VALIDATE_INTEGER, .min_int = 1, .max_int = 100},
    {.name = "age", .type = VALIDATE_INTEGER, .max_int = LLONG_MAX},
    {.name = "delta",
     .type = VALIDATE_INTEGER,
     .min_int = LLONG_MIN,
     .max_int = -1},
    {.name = "any", .type = VALIDATE_INTEGER},
    {.name = "ratio", .type = VALIDATE_NUMBER},
    {.name = "on", .type = VALIDATE_BOOLEAN},
    {.name = "code", .type = VALIDATE_STRING, .min_chars = 3, .max_chars = 3},
    {.name = "name", .type = VALIDATE_STRING, .min_chars = 2},
    {.name = "note",
     .type = VALIDATE_STRING,
     .flags = VALIDATE_NULLABLE,
     .max_chars = 1},
    {.name = "point", .type = VALIDATE_OBJECT, .shape = &vpoint},
    {.name = "ids",
     .type = VALIDATE_ARRAY,
     .items = VALIDATE_INTEGER,
     .min_items = 1,
     .max_items = 3,
     .min_int = 1,
     .max_int = 9},
    {.name = "labels",
     .type = VALIDATE_ARRAY,
     .items = VALIDATE_STRING,
     .min_items = 1},
    {.name = "grid", .type = VALIDATE_ARRAY, .items = VALIDATE_ARRAY},
    {.name = "pts",
     .type = VALIDATE_ARRAY,
     .items = VALIDATE_OBJECT,
     .shape = &vpoint},
    {.name = "a/b~c", .type = VALIDATE_BOOLEAN},
};
static const struct validate_shape vkind = VALIDATE_SHAPE(vkind_fields);

#define V_TITLE "#/title", "must be 1 to 200 characters"
#define V_TAGLEN "must be 1 to 32 characters"
#define V_UNKNOWN "is not a known field"
#define V_NOT_OBJECT "#", "must be an object"
#define V_WANT 20 /* pointer and detail pairs: 10 errors */

/*
 * Each row: a JSON text (<<u*N>> stands for u written N times), the shape,
 * the mode, and the errors expected, in order, as pointer and detail pairs
 * (none: it fits); they are compared as compact JSON text.
 */
static const struct validate_case {
	const char *text;
	const struct validate_shape *shape;
	enum validate_mode mode;
	const char *want[V_WANT];
} validate_cases[] = {
    /* title: 1 to 200 code points, whatever their bytes */
    {"{\"title\":\"a\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"\"}", &vnote, VALIDATE_WHOLE, {V_TITLE}},
    {"{\"title\":\"<<a*200>>\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<a*201>>\"}", &vnote, VALIDATE_WHOLE, {V_TITLE}},
    {"{\"title\":\"\xc3\xa9\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<\xc3\xa9*200>>\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<\xc3\xa9*201>>\"}", &vnote, VALIDATE_WHOLE, {V_TITLE}},
    {"{\"title\":\"<<\xe2\x82\xac*200>>\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<\xe2\x82\xac*201>>\"}", &vnote, VALIDATE_WHOLE, {V_TITLE}},
    {"{\"title\":\"<<\xf0\x9f\x98\x80*200>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"title\":\"<<\xf0\x9f\x98\x80*201>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {V_TITLE}},
    /* an escaped surrogate pair is one code point, not two */
    {"{\"title\":\"<<\\ud83d\\ude00*200>>\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<\\ud83d\\ude00*201>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {V_TITLE}},
    /* code points, not graphemes: e and U+0301 are two */
    {"{\"title\":\"<<e\\u0301*100>>\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"<<e\\u0301*100>>e\"}", &vnote, VALIDATE_WHOLE, {V_TITLE}},
    /* U+0000: valid JSON no string field may hold, refused with its
     * pointer wherever it is (dispatch.c parses with JSON_ALLOW_NUL) */
    {"{\"title\":\"a\\u0000b\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/title", "must not contain U+0000"}},
    {"{\"title\":\"a\",\"body\":\"\\u0000\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must not contain U+0000"}},
    {"{\"title\":\"a\",\"tags\":[\"t\",\"x\\u0000\"]}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/tags/1", "must not contain U+0000"}},
    /* required, not null, a string */
    {"{}", &vnote, VALIDATE_WHOLE, {"#/title", "is required"}},
    {"{\"title\":null}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/title", "must not be null"}},
    {"{\"title\":1}", &vnote, VALIDATE_WHOLE, {"#/title", "must be a string"}},
    {"{\"title\":true}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/title", "must be a string"}},
    {"{\"title\":[\"a\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/title", "must be a string"}},
    {"{\"title\":{}}", &vnote, VALIDATE_WHOLE, {"#/title", "must be a string"}},
    /* body: at most 4096 bytes, whatever their characters */
    {"{\"title\":\"a\",\"body\":\"\"}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"a\",\"body\":\"<<a*4096>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"title\":\"a\",\"body\":\"<<a*4097>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must be at most 4096 bytes"}},
    {"{\"title\":\"a\",\"body\":\"<<\xc3\xa9*2048>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"title\":\"a\",\"body\":\"<<\xc3\xa9*2048>>a\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must be at most 4096 bytes"}},
    {"{\"title\":\"a\",\"body\":\"<<\\u00e9*2049>>\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must be at most 4096 bytes"}},
    {"{\"title\":\"a\",\"body\":null}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must not be null"}},
    {"{\"title\":\"a\",\"body\":4096}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/body", "must be a string"}},
    /* tags: at most 8 strings of 1 to 32 characters */
    {"{\"title\":\"a\",\"tags\":[]}", &vnote, VALIDATE_WHOLE, {NULL}},
    {"{\"title\":\"a\",\"tags\":[<<\"t\",*7>>\"t\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"title\":\"a\",\"tags\":[<<\"t\",*8>>\"t\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags", "must have at most 8 items"}},
    {"{\"title\":\"a\",\"tags\":[\"\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/0", V_TAGLEN}},
    {"{\"title\":\"a\",\"tags\":[\"t\",\"<<\xc3\xa9*32>>\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"title\":\"a\",\"tags\":[\"t\",\"<<\xc3\xa9*33>>\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/1", V_TAGLEN}},
    {"{\"title\":\"a\",\"tags\":[\"<<z*32>>\",\"<<z*33>>\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/1", V_TAGLEN}},
    {"{\"title\":\"a\",\"tags\":[\"t\",7]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/1", "must be a string"}},
    {"{\"title\":\"a\",\"tags\":[\"t\",[\"t\"]]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/1", "must be a string"}},
    {"{\"title\":\"a\",\"tags\":[null]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags/0", "must not be null"}},
    {"{\"title\":\"a\",\"tags\":\"t\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags", "must be an array"}},
    {"{\"title\":\"a\",\"tags\":{\"0\":\"t\"}}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags", "must be an array"}},
    /* nine tags, one of them bad: the count, then the item */
    {"{\"title\":\"a\",\"tags\":[<<\"t\",*8>>\"\"]}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/tags", "must have at most 8 items", "#/tags/8", V_TAGLEN}},
    /* unknown fields, after the rows, in the body's order (not sorted) */
    {"{\"title\":\"a\",\"x\":1}", &vnote, VALIDATE_WHOLE, {"#/x", V_UNKNOWN}},
    {"{\"zz\":1,\"title\":\"\",\"aa\":null}",
     &vnote,
     VALIDATE_WHOLE,
     {V_TITLE, "#/zz", V_UNKNOWN, "#/aa", V_UNKNOWN}},
    {"{\"Title\":\"a\"}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/title", "is required", "#/Title", V_UNKNOWN}},
    /* every error at once */
    {"{\"title\":\"\",\"body\":7,\"tags\":[\"\",null,3,\"<<a*33>>\",\"ok\"],"
     "\"extra\":true}",
     &vnote,
     VALIDATE_WHOLE,
     {V_TITLE, "#/body", "must be a string", "#/tags/0", V_TAGLEN, "#/tags/1",
      "must not be null", "#/tags/2", "must be a string", "#/tags/3", V_TAGLEN,
      "#/extra", V_UNKNOWN}},
    /* pointers: RFC 6901's examples (sections 5 and 6), then more */
    {"{\"title\":\"a\",\"a/b\":0,\"m~n\":0,\"c%d\":0,\"e^f\":0,\"g|h\":0,"
     "\"i\\\\j\":0,\"k\\\"l\":0,\" \":0,\"\":0}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/a~1b", V_UNKNOWN, "#/m~0n", V_UNKNOWN, "#/c%25d", V_UNKNOWN, "#/e%5Ef",
      V_UNKNOWN, "#/g%7Ch", V_UNKNOWN, "#/i%5Cj", V_UNKNOWN, "#/k%22l",
      V_UNKNOWN, "#/%20", V_UNKNOWN, "#/", V_UNKNOWN}},
    {"{\"title\":\"a\",\"caf\xc3\xa9\":0,\"#?\":0,\"~/~1\":0,"
     "\"-._!$&'()*+,;=:@\":0,\"<>[]{}`\\u007f\\t\":0}",
     &vnote,
     VALIDATE_WHOLE,
     {"#/caf%C3%A9", V_UNKNOWN, "#/%23?", V_UNKNOWN, "#/~0~1~01", V_UNKNOWN,
      "#/-._!$&'()*+,;=:@", V_UNKNOWN, "#/%3C%3E%5B%5D%7B%7D%60%7F%09",
      V_UNKNOWN}},
    /* not an object: one error at the root, in either mode */
    {"[]", &vnote, VALIDATE_WHOLE, {V_NOT_OBJECT}},
    {"\"title\"", &vnote, VALIDATE_WHOLE, {V_NOT_OBJECT}},
    {"1", &vnote, VALIDATE_WHOLE, {V_NOT_OBJECT}},
    {"null", &vnote, VALIDATE_WHOLE, {V_NOT_OBJECT}},
    {"true", &vnote, VALIDATE_WHOLE, {V_NOT_OBJECT}},
    {"[{\"title\":\"a\"}]", &vnote, VALIDATE_MERGE_PATCH, {V_NOT_OBJECT}},
    {"null", &vnote, VALIDATE_MERGE_PATCH, {V_NOT_OBJECT}},
    /* a merge patch: nothing required, null removes an optional field */
    {"{}", &vnote, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"body\":\"b\"}", &vnote, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"body\":null,\"tags\":null}", &vnote, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"title\":null}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/title", "must not be null"}},
    {"{\"title\":\"\"}", &vnote, VALIDATE_MERGE_PATCH, {V_TITLE}},
    {"{\"title\":\"<<\xc3\xa9*200>>\"}", &vnote, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"title\":\"<<\xc3\xa9*201>>\"}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {V_TITLE}},
    {"{\"body\":\"<<a*4097>>\"}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/body", "must be at most 4096 bytes"}},
    {"{\"tags\":[\"t\",null]}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/tags/1", "must not be null"}},
    {"{\"tags\":[<<\"t\",*8>>\"t\"]}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/tags", "must have at most 8 items"}},
    {"{\"x\":null}", &vnote, VALIDATE_MERGE_PATCH, {"#/x", V_UNKNOWN}},
    {"{\"title\":7,\"body\":null,\"y\":1}",
     &vnote,
     VALIDATE_MERGE_PATCH,
     {"#/title", "must be a string", "#/y", V_UNKNOWN}},
    /* integers: a range, one side open, or any */
    {"{\"count\":1}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"count\":100}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"count\":0}", &vkind, VALIDATE_WHOLE, {"#/count", "must be 1 to 100"}},
    {"{\"count\":101}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be 1 to 100"}},
    {"{\"count\":-9223372036854775808}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be 1 to 100"}},
    {"{\"count\":1.0}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be an integer"}},
    {"{\"count\":1e1}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be an integer"}},
    {"{\"count\":\"1\"}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be an integer"}},
    {"{\"count\":true}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must be an integer"}},
    {"{\"age\":0,\"delta\":-1}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"age\":9223372036854775807,\"delta\":-9223372036854775808}",
     &vkind,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"age\":-1,\"delta\":0}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/age", "must be at least 0", "#/delta", "must be at most -1"}},
    {"{\"any\":-9223372036854775808}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"any\":0}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"any\":0.5}", &vkind, VALIDATE_WHOLE, {"#/any", "must be an integer"}},
    /* numbers and booleans */
    {"{\"ratio\":1,\"on\":true}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"ratio\":-1.5e300,\"on\":false}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"ratio\":\"1\",\"on\":1}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/ratio", "must be a number", "#/on", "must be a boolean"}},
    {"{\"on\":\"true\"}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/on", "must be a boolean"}},
    /* string bounds, worded as they are set */
    {"{\"code\":\"abc\",\"name\":\"ab\"}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"code\":\"ab\",\"name\":\"a\"}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/code", "must be exactly 3 characters", "#/name",
      "must be at least 2 characters"}},
    {"{\"code\":\"abcd\"}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/code", "must be exactly 3 characters"}},
    {"{\"code\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}",
     &vkind,
     VALIDATE_WHOLE,
     {NULL}},
    {"{\"note\":\"\xf0\x9f\x98\x80\"}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"note\":\"ab\"}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/note", "must be at most 1 character"}},
    /* nullable: null is a value in a whole body */
    {"{\"note\":null}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"count\":null,\"note\":null}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/count", "must not be null"}},
    /* a nested object: required and unknown inside it */
    {"{\"point\":{\"x\":1}}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"point\":{}}", &vkind, VALIDATE_WHOLE, {"#/point/x", "is required"}},
    {"{\"point\":{\"x\":\"1\",\"z\":0}}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/point/x", "must be a number", "#/point/z", V_UNKNOWN}},
    {"{\"point\":[1]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/point", "must be an object"}},
    {"{\"point\":{\"x\":1,\"y\":null}}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/point/y", "must not be null"}},
    /* ... and in a patch, a patch itself (RFC 7396) */
    {"{\"point\":{}}", &vkind, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"point\":{\"y\":null}}", &vkind, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"point\":null}", &vkind, VALIDATE_MERGE_PATCH, {NULL}},
    {"{\"point\":{\"x\":null}}",
     &vkind,
     VALIDATE_MERGE_PATCH,
     {"#/point/x", "must not be null"}},
    /* a repeated name: jansson keeps the last value, in the first place */
    {"{\"count\":null,\"note\":null,\"count\":0}",
     &vkind,
     VALIDATE_MERGE_PATCH,
     {"#/count", "must be 1 to 100"}},
    /* arrays of integers: the items' bounds are the row's */
    {"{\"ids\":[1,9,5]}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"ids\":[]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/ids", "must have 1 to 3 items"}},
    {"{\"ids\":[0,10,\"a\",null]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/ids", "must have 1 to 3 items", "#/ids/0", "must be 1 to 9", "#/ids/1",
      "must be 1 to 9", "#/ids/2", "must be an integer", "#/ids/3",
      "must not be null"}},
    {"{\"labels\":[]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/labels", "must have at least 1 item"}},
    {"{\"labels\":[\"\"]}", &vkind, VALIDATE_WHOLE, {NULL}},
    /* arrays in an array: checked to be arrays, no deeper */
    {"{\"grid\":[[],[1,[\"x\"]]]}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"grid\":[[],1]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/grid/1", "must be an array"}},
    /* objects in an array are whole, even in a patch */
    {"{\"pts\":[{\"x\":1},{\"y\":2},3,{\"x\":1,\"q\":1}]}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/pts/1/x", "is required", "#/pts/2", "must be an object", "#/pts/3/q",
      V_UNKNOWN}},
    {"{\"pts\":[{\"y\":2}]}",
     &vkind,
     VALIDATE_MERGE_PATCH,
     {"#/pts/0/x", "is required"}},
    /* a row's own name is escaped as well */
    {"{\"a/b~c\":true}", &vkind, VALIDATE_WHOLE, {NULL}},
    {"{\"a/b~c\":1}",
     &vkind,
     VALIDATE_WHOLE,
     {"#/a~1b~0c", "must be a boolean"}},
    {"{\"a~1b~0c\":true}", &vkind, VALIDATE_WHOLE, {"#/a~01b~00c", V_UNKNOWN}},
};
#define N_VALIDATE (sizeof(validate_cases) / sizeof(validate_cases[0]))

/* text with every <<unit*N>> written out N times; malloc'd. */
static char *
validate_expand(const char *text)
{
	size_t cap = strlen(text) + 1, len = 0;
	char *out = malloc(cap);

	while (out != NULL && *text != '\0') {
		const char *open = strstr(text, "<<"), *star, *close;
		size_t unit, times;

		if (open == NULL)
			open = text + strlen(text);
		if (len + (size_t)(open - text) + 1 > cap)
			break;
		memcpy(out + len, text, (size_t)(open - text));
		len += (size_t)(open - text);
		text = open;
		if (*text == '\0')
			break;
		star = strchr(open, '*');
		close = star != NULL ? strstr(star, ">>") : NULL;
		if (close == NULL)
			break;
		unit = (size_t)(star - open - 2);
		times = strtoul(star + 1, NULL, 10);
		{
			char *grown = realloc(out, cap + unit * times);

			if (grown == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
			cap += unit * times;
		}
		for (size_t i = 0; i < times; i++, len += unit)
			memcpy(out + len, open + 2, unit);
		text = close + 2;
	}
	if (out != NULL)
		out[len] = '\0';
	return out;
}

/* The pairs of a row as the compact JSON text validate's array should be. */
static char *
validate_want(const char *const *want)
{
	json_t *a = json_array();
	char *text;

	for (size_t i = 0; a != NULL && i + 1 < V_WANT && want[i] != NULL;
	     i += 2)
		json_array_append_new(a, json_pack("{s:s, s:s}", "pointer",
		                                   want[i], "detail",
		                                   want[i + 1]));
	text = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return text;
}

static void
test_validate_table(void)
{
	for (size_t i = 0; i < N_VALIDATE; i++) {
		const struct validate_case *c = &validate_cases[i];
		const char *mode =
		    c->mode == VALIDATE_WHOLE ? "whole" : "patch";
		char *text = validate_expand(c->text);
		json_error_t jerr;
		json_t *body =
		    text != NULL
		        ? json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL,
		                     &jerr)
		        : NULL;
		json_t *errors = (json_t *)&i; /* must be set either way */
		char *got = NULL, *want = NULL;
		size_t n;

		if (body == NULL) {
			ok(0, "validate row %zu parses: %s", i,
			   text != NULL ? jerr.text : "out of memory");
			free(text);
			continue;
		}
		n = validate(c->shape, body, c->mode, &errors);
		if (c->want[0] == NULL) {
			ok(n == 0 && errors == NULL,
			   "validate row %zu fits (%s): %.60s", i, mode,
			   c->text);
		} else {
			got = errors != NULL ? json_dumps(errors, JSON_COMPACT)
			                     : NULL;
			want = validate_want(c->want);
			ok(got != NULL && want != NULL &&
			       strcmp(got, want) == 0 &&
			       n == json_array_size(errors),
			   "validate row %zu (%s): %.60s", i, mode, c->text);
		}
		if (c->want[0] == NULL
		        ? n != 0
		        : got == NULL || want == NULL || strcmp(got, want) != 0)
			diag("  got %zu: %s\n#   want %s", n,
			     got != NULL ? got : "(none)",
			     want != NULL ? want : "(none)");
		free(want);
		free(got);
		if (errors != (json_t *)&i)
			json_decref(errors);
		json_decref(body);
		free(text);
	}
}

/* The 422 as it goes out, the cap on errors, and long pointers. */
static void
test_validate_reply(void)
{
	struct reply rep = {0};
	char buf[1024];
	size_t n = 0;
	json_t *body =
	    json_pack("{s:s, s:i, s:b}", "title", "", "body", 7, "x", 1);
	json_t *errors;

	ok(body != NULL, "validate_body: a body");
	ok(validate_body(&vnote, body, VALIDATE_WHOLE, &rep) == -1,
	   "validate_body: -1 when it does not fit");
	is(rep.status, 422, "a 422");
	is_str(reply_content_type(&rep), "application/problem+json",
	       "as problem details");
	ok(reply_render(&rep, buf, sizeof(buf), &n) == 0 && n < sizeof(buf),
	   "renders");
	buf[n < sizeof(buf) ? n : 0] = '\0';
	is_str(buf,
	       "{\"type\":\"about:blank\",\"title\":\"Unprocessable Content\","
	       "\"status\":422,\"detail\":\"the body does not fit: 3 errors\","
	       "\"errors\":[{\"pointer\":\"#/title\",\"detail\":"
	       "\"must be 1 to 200 characters\"},{\"pointer\":\"#/body\","
	       "\"detail\":\"must be a string\"},{\"pointer\":\"#/x\","
	       "\"detail\":\"is not a known field\"}]}\n",
	       "RFC 9457 members, then errors, every one");
	reply_release(&rep);
	json_decref(body);

	{
		struct reply fresh = {0};

		body = json_pack("{s:s}", "title", "t");
		ok(validate_body(&vnote, body, VALIDATE_WHOLE, &fresh) == 0 &&
		       fresh.status == 0 && fresh.body == NULL,
		   "validate_body: 0 when it fits, the reply untouched");
		json_decref(body);
	}

	body = json_pack("[]");
	ok(validate_body(&vnote, body, VALIDATE_MERGE_PATCH, &rep) == -1 &&
	       rep.status == 422,
	   "a patch that is not an object: 422");
	is_str(json_string_value(json_object_get(rep.body, "detail")),
	       "the body does not fit: 1 error", "one error, singular");
	reply_release(&rep);
	json_decref(body);

	/* More errors than one reply lists: all counted, 100 listed. */
	body = json_pack("{s:s}", "title", "t");
	for (int i = 0; i < 150 && body != NULL; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%03d", i);
		json_object_set_new(body, key, json_null());
	}
	n = validate(&vnote, body, VALIDATE_WHOLE, &errors);
	is(n, 150, "150 unknown fields: 150 errors counted");
	is(json_array_size(errors), VALIDATE_ERRORS_MAX, "100 listed");
	is_str(json_string_value(json_object_get(
	           json_array_get(errors, VALIDATE_ERRORS_MAX - 1), "pointer")),
	       "#/k099", "the first 100, in order");
	validate_reply(&rep, errors, n); /* takes errors over */
	is(rep.status, 422, "a 422");
	is_str(json_string_value(json_object_get(rep.body, "detail")),
	       "the body does not fit: 150 errors, the first 100 listed",
	       "the detail says how many were left out");
	reply_release(&rep);
	json_decref(body);

	validate_reply(&rep, NULL, 3);
	is(rep.status, 500, "validate_reply without errors (no memory): 500");
	reply_release(&rep);

	/* A pointer past the walk's first buffer: 2 + 3 * 300 bytes. */
	{
		char key[301], want[903];

		memset(key, '%', 300);
		key[300] = '\0';
		memcpy(want, "#/", 2);
		for (size_t i = 0; i < 300; i++)
			memcpy(want + 2 + 3 * i, "%25", 3);
		want[902] = '\0';
		body = json_pack("{s:s}", "title", "t");
		json_object_set_new(body, key, json_true());
		n = validate(&vnote, body, VALIDATE_WHOLE, &errors);
		is(n, 1, "a 300-byte unknown name");
		is_str(json_string_value(json_object_get(
		           json_array_get(errors, 0), "pointer")),
		       want, "its pointer: 902 bytes, every '%%' as %%25");
		json_decref(errors);
		json_decref(body);
		body = json_pack("{s:{s:i}}", "point", key, 1);
		n = validate(&vkind, body, VALIDATE_WHOLE, &errors);
		is(n, 2, "in a nested object too, after the row it lacks");
		is_str(json_string_value(json_object_get(
		           json_array_get(errors, 0), "pointer")),
		       "#/point/x", "the row first");
		{
			const char *got = json_string_value(json_object_get(
			    json_array_get(errors, 1), "pointer"));

			ok(got != NULL && strncmp(got, "#/point", 7) == 0 &&
			       strcmp(got + 7, want + 1) == 0,
			   "then the long name under #/point");
		}
		json_decref(errors);
		json_decref(body);
	}
}

static void
test_validate(void)
{
	test_validate_table();
	test_validate_reply();
}

/* The issue's SQLSTATE table, one row per rule and per edge of a class. */
static void
test_db_sqlstate(void)
{
	static const struct {
		const char *sqlstate; /* NULL: no connection, no SQLSTATE */
		unsigned int status;
		int retry;
		unsigned int retry_after;
	} rows[] = {
	    {"23505", 409, 0, 0}, /* unique_violation */
	    {"23503", 500, 0, 0}, /* foreign_key_violation: not ours */
	    {"40001", 503, 1, 1}, /* serialization_failure: once more */
	    {"40P01", 503, 1, 1}, /* deadlock_detected */
	    {"40002", 500, 0, 0}, /* integrity constraint in commit */
	    {"57014", 504, 0, 0}, /* query_canceled: statement_timeout */
	    {"57000", 500, 0, 0}, /* operator_intervention, the class */
	    {"57P01", 503, 0, 1}, /* admin_shutdown: a restart */
	    {"57P02", 503, 0, 1}, /* crash_shutdown */
	    {"57P03", 503, 0, 1}, /* cannot_connect_now */
	    {"57P04", 500, 0, 0}, /* database_dropped */
	    {"08000", 503, 0, 1}, /* connection_exception */
	    {"08006", 503, 0, 1}, /* connection_failure */
	    {"08P01", 503, 0, 1}, /* protocol_violation: class 08 */
	    {NULL, 503, 0, 1},    /* libpq's own: the connection is gone */
	    {"22P02", 400, 0, 0}, /* invalid_text_representation */
	    {"22P03", 500, 0, 0}, /* invalid_binary_representation */
	    {"22001", 500, 0, 0}, /* string_data_right_truncation */
	    {"42P01", 500, 0, 0}, /* undefined_table */
	    {"XX000", 500, 0, 0}, /* internal_error */
	    {"", 500, 0, 0},      /* not a SQLSTATE */
	    {"2350", 500, 0, 0},   {"235050", 500, 0, 0},
	    {"08a01", 500, 0, 0}, /* lower case: not a SQLSTATE */
	    {"0800\n", 500, 0, 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct db_verdict v = db_sqlstate_verdict(rows[i].sqlstate);
		const char *s = rows[i].sqlstate ? rows[i].sqlstate : "NULL";

		ok(v.status == rows[i].status && v.retry == rows[i].retry &&
		       v.retry_after == rows[i].retry_after,
		   "SQLSTATE %s: %u%s%s (got %u retry %d Retry-After %u)",
		   strcmp(s, "0800\n") == 0 ? "0800\\n" : s, rows[i].status,
		   rows[i].retry ? ", once more first" : "",
		   rows[i].retry_after ? ", Retry-After: 1" : "", v.status,
		   v.retry, v.retry_after);
	}
}

/* The conninfo as logged: every key but the password, in both forms. */
static void
test_db_conninfo(void)
{
	static const struct {
		const char *in, *want; /* want NULL: does not parse */
	} rows[] = {
	    {"postgresql://app:s3cr%40t@db.example:5433/notes?sslmode=require",
	     "user='app' dbname='notes' host='db.example' port='5433' "
	     "sslmode='require'"},
	    {"host=/run/pg user=app password='it''s secret'", NULL},
	    {"host=/run/pg port=5432 user=app password='it\\'s s3cret' "
	     "dbname=notes sslpassword=k3y",
	     "user='app' dbname='notes' host='/run/pg' port='5432'"},
	    {"postgresql:///notes?host=/run/pg&password=s3cret",
	     "dbname='notes' host='/run/pg'"},
	    {"postgresql://app@/notes", "user='app' dbname='notes'"},
	    {"application_name='a\\\\b'", "application_name='a\\\\b'"},
	    {"password=s3cret", ""},
	    {"host=a password", NULL}, /* libpq's message would quote it */
	    {"postgresql://app:s3cret@[::1", NULL},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *got = db_conninfo_redact(rows[i].in);

		if (rows[i].want == NULL)
			ok(got == NULL, "conninfo row %zu does not parse: %s",
			   i, got ? got : "NULL");
		else
			is_str(got, rows[i].want,
			       "conninfo row %zu without its password", i);
		ok(got == NULL || (strstr(got, "s3c") == NULL &&
		                   strstr(got, "k3y") == NULL &&
		                   strstr(got, "secret") == NULL),
		   "  and no secret in it");
		free(got);
	}
}

/* The checksum is SHA-256's hex (FIPS 180-2's vectors); the built-in
 * table is in strictly increasing name order, each text its length. */
static void
test_db_migrations(void)
{
	static const struct {
		const char *text, *hex;
	} rows[] = {
	    {"",
	     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8"
	     "55"},
	    {"abc",
	     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20"
	     "015ad"},
	};
	char hex[65];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct db_migration m = {"t.sql", rows[i].text,
		                         strlen(rows[i].text)};

		ok(db_migration_checksum(&m, hex) == 0 &&
		       strcmp(hex, rows[i].hex) == 0,
		   "checksum of \"%s\": %s", rows[i].text, hex);
	}
	ok(app_migrations_count >= 2, "%u migrations built in",
	   app_migrations_count);
	for (unsigned int i = 0; i < app_migrations_count; i++) {
		const struct db_migration *m = &app_migrations[i];

		ok(m->len > 0 && strlen(m->sql) == m->len &&
		       m->name[0] >= '0' && m->name[0] <= '9' &&
		       (i == 0 ||
		        strcmp(app_migrations[i - 1].name, m->name) < 0),
		   "  %s: %zu bytes, in name order", m->name, m->len);
	}
}

int
main(void)
{
	if (router_join(builtin_routes, builtin_routes_count, app_routes,
	                app_routes_count) != 0)
		return 1;
	test_router();
	test_dispatch_is_json();
	test_middleware_skips();
	test_reply();
	test_reply_header();
	test_request_db();
	test_pool();
	test_health();
	test_encode();
	test_config();
	test_config_bounds();
	test_resources();
	test_activation();
	test_notify();
	test_number();
	test_world_queries();
	test_policy_names();
	test_policy_framing();
	test_policy_trailers();
	test_policy_fields();
	test_policy_json_cost();
	test_policy_target();
	test_trace();
	test_otelconf();
	test_otel_sample();
	test_otel_spans();
	test_export();
	test_auth();
	test_ratelimit();
	test_client_key();
	test_key_prefix();
	test_outbound_status_line();
	test_validate();

	test_db_sqlstate();
	test_db_conninfo();
	test_db_migrations();
	return done_testing();
}
