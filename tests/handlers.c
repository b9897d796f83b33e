/* SPDX-License-Identifier: MIT */
/*
 * handlers.c -- the service's handlers and microd's own, each through the
 * router as the server runs them, without a socket (tests/oneshot.c)
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"
#include "builtin.h"
#include "check.h"
#include "config.h"
#include "oneshot.h"
#include "reply.h"
#include "router.h"

static struct app *app;

static const char *const json_header[] = {"Content-Type: application/json",
                                          NULL};

/* A header the handler set, or NULL. */
static const char *
header(const struct reply *rep, const char *name)
{
	for (size_t i = 0; i < rep->n_headers; i++)
		if (strcasecmp(rep->headers[i].name, name) == 0)
			return rep->headers[i].value;
	return NULL;
}

static const char *
detail(const struct reply *rep)
{
	return json_string_value(json_object_get(rep->body, "detail"));
}

/* method + target, no header, no body: its reply in rep. */
static void
run(const char *method, const char *target, struct reply *rep)
{
	struct oneshot req = {.method = method, .target = target, .app = app};

	if (oneshot_run(&req, rep) != 0)
		ok(0, "%s %s: out of memory", method, target);
}

static void
test_echo(void)
{
	struct reply rep;

	oneshot_run(&(struct oneshot){.method = "POST",
	                              .target = "/echo",
	                              .headers = json_header,
	                              .body = "{\"a\":1}"},
	            &rep);
	is(rep.status, 200, "POST /echo is 200");
	is(json_integer_value(json_object_get(rep.body, "a")), 1, "echoed");
	reply_release(&rep);
}

/* What the server checks before a JSON handler runs, with the same words. */
static void
test_echo_refused(void)
{
	struct reply rep;

	oneshot_run(&(struct oneshot){.method = "POST",
	                              .target = "/echo",
	                              .body = "{}"},
	            &rep);
	is(rep.status, 415, "POST /echo without Content-Type is 415");
	is_str(detail(&rep), "the request body must be application/json",
	       "the Content-Type rule answered");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "POST",
	                              .target = "/echo",
	                              .headers = json_header,
	                              .body = "{\"a\":}"},
	            &rep);
	is(rep.status, 400, "POST /echo with broken JSON is 400");
	is_str(detail(&rep),
	       "invalid JSON at line 1, column 6: unexpected token near '}'",
	       "jansson's position and reason in the detail");
	reply_release(&rep);
	run("PUT", "/echo", &rep);
	is(rep.status, 405, "PUT /echo is 405");
	is_str(rep.allow, "POST", "Allow: POST");
	reply_release(&rep);
}

static void
test_status(void)
{
	struct reply rep;

	run("GET", "/status/418", &rep);
	is(rep.status, 418, "GET /status/418 is 418");
	is_str(detail(&rep), "status 418, as asked", "its detail says so");
	ok(rep.problem, "as problem details");
	reply_release(&rep);
	run("GET", "/status/503", &rep);
	is_str(header(&rep, "Retry-After"), "1", "a 503 carries Retry-After");
	reply_release(&rep);
	run("GET", "/status/99", &rep);
	is(rep.status, 400, "GET /status/99 is 400");
	is_str(detail(&rep), "code must be an integer from 100 to 599",
	       "the handler's range rule answered");
	reply_release(&rep);
	run("GET", "/status/101", &rep);
	is_str(detail(&rep),
	       "101 is informational: a 1xx status cannot end a request",
	       "GET /status/101: the 1xx rule answered");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "GET",
	                              .target = "/status/418",
	                              .hide = ROUTE_EXAMPLE},
	            &rep);
	is(rep.status, 404, "without --example-routes /status/418 is 404");
	reply_release(&rep);
}

static void
test_delay(void)
{
	static const char *const ua[] = {"User-Agent: oneshot/1", NULL};
	struct reply rep;

	oneshot_run(&(struct oneshot){.method = "GET",
	                              .target = "/delay/0?x=1",
	                              .headers = ua,
	                              .app = app},
	            &rep);
	is(rep.status, 200, "GET /delay/0 is 200 (a blocking route, run here)");
	is(json_integer_value(json_object_get(rep.body, "delayed_ms")), 0,
	   "delayed_ms 0");
	is_str(json_string_value(json_object_get(rep.body, "user_agent")),
	       "oneshot/1", "the handler read the User-Agent header");
	is_str(json_string_value(json_object_get(rep.body, "peer")),
	       "127.0.0.1", "and the peer");
	ok(json_string_length(json_object_get(rep.body, "request_id")) > 0,
	   "and a request id");
	reply_release(&rep);
	run("GET", "/delay/10001", &rep);
	is_str(detail(&rep), "ms must be an integer from 0 to 10000",
	       "GET /delay/10001: the bound answered");
	reply_release(&rep);
}

static void
test_resolve(void)
{
	struct reply rep;
	json_t *a;
	size_t i;
	int v4 = 0;

	run("GET", "/resolve/localhost", &rep);
	is(rep.status, 200, "GET /resolve/localhost is 200");
	json_array_foreach(json_object_get(rep.body, "addresses"), i, a) v4 |=
	    strcmp(json_string_value(a), "127.0.0.1") == 0;
	ok(v4, "its addresses hold 127.0.0.1");
	is_str(header(&rep, "Cache-Control"), "max-age=30",
	       "with Cache-Control: max-age=30");
	reply_release(&rep);
}

static void
test_notes(void)
{
	static const char *const match[] = {"If-None-Match: W/\"1\"", NULL};
	struct reply rep;

	oneshot_run(&(struct oneshot){.method = "PUT",
	                              .target = "/notes/a",
	                              .body = "hi",
	                              .app = app},
	            &rep);
	is(rep.status, 201, "PUT /notes/a is 201");
	is_str(header(&rep, "Location"), "/notes/a", "Location: /notes/a");
	is_str(header(&rep, "ETag"), "\"1\"", "ETag: \"1\"");
	reply_release(&rep);
	run("GET", "/notes/a", &rep);
	is(rep.status, 200, "GET /notes/a is 200");
	ok(rep.text != NULL && rep.text_len == 2 &&
	       memcmp(rep.text, "hi", 2) == 0,
	   "with the text stored");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "GET",
	                              .target = "/notes/a",
	                              .headers = match,
	                              .app = app},
	            &rep);
	is(rep.status, 304, "If-None-Match: W/\"1\" is 304");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "PUT",
	                              .target = "/notes/..",
	                              .body = "x",
	                              .app = app},
	            &rep);
	is_str(detail(&rep),
	       "a note's name is 1 to 64 letters, digits, '.', '_' or '-', "
	       "not only dots",
	       "PUT /notes/..: the name rule answered");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "PUT",
	                              .target = "/notes/b",
	                              .body = "a\0b",
	                              .body_len = 3,
	                              .app = app},
	            &rep);
	is_str(detail(&rep), "a note is UTF-8 text without NUL bytes",
	       "a NUL in a note: the text rule answered");
	reply_release(&rep);
	run("GET", "/notes/nope", &rep);
	is_str(detail(&rep), "no note named nope", "GET /notes/nope is 404");
	is(rep.status, 404, "GET /notes/nope is 404");
	reply_release(&rep);
}

/* The router's own answers and the target's rules, before any handler. */
static void
test_router_answers(void)
{
	struct reply rep;

	run("GET", "/status/a%2Fb", &rep);
	is(rep.status, 400, "GET /status/a%%2Fb is 400");
	is_str(detail(&rep),
	       "path parameter code: an encoded '/' (%2F) is not allowed in it",
	       "the router's parameter rule answered");
	reply_release(&rep);
	run("GET", "/nowhere?x", &rep);
	is(rep.status, 404, "GET /nowhere is 404");
	reply_release(&rep);
	run("GET", "/version", &rep);
	is(rep.status, 200, "GET /version is 200");
	is_str(json_string_value(json_object_get(rep.body, "name")), "microd",
	       "microd's own rows are joined with the service's");
	reply_release(&rep);
}

/* The query as libmicrohttpd decodes it: '+' a space, a bad escape kept. */
static void
test_query(void)
{
	struct reply rep;
	json_t *notes;

	run("GET", "/readyz?verbose&exclude=a+b&exclude=c%zz&exclude=d%41",
	    &rep);
	notes = json_object_get(rep.body, "notes");
	is(json_array_size(notes), 3,
	   "GET /readyz?verbose&exclude=...: 3 notes");
	is_str(json_string_value(json_array_get(notes, 0)),
	       "exclude=a b: no such check, ignored", "'+' is a space");
	is_str(json_string_value(json_array_get(notes, 1)),
	       "exclude=c%zz: no such check, ignored",
	       "a '%%' without two hex digits stays as sent");
	is_str(json_string_value(json_array_get(notes, 2)),
	       "exclude=dA: no such check, ignored", "%%41 is an A");
	reply_release(&rep);
}

int
main(void)
{
	struct config cfg = {.example_routes = 1};

	if (router_join(builtin_routes, builtin_routes_count, app_routes,
	                app_routes_count) != 0)
		return 1;
	app = app_start(&cfg);
	if (app == NULL)
		return 1;
	test_echo();
	test_echo_refused();
	test_status();
	test_delay();
	test_resolve();
	test_notes();
	test_router_answers();
	test_query();
	app_stop(app);
	return done_testing();
}
