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
	is_str(
	    detail(&rep),
	    "the request body must be application/json or application/*+json",
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

/* POST /count: a raw body, any Content-Type, as sent. */
static void
test_count(void)
{
	struct reply rep;

	oneshot_run(&(struct oneshot){.method = "POST",
	                              .target = "/count",
	                              .body = "caf\xc3\xa9\nn",
	                              .app = app},
	            &rep);
	is(rep.status, 200, "POST /count is 200");
	is(json_integer_value(json_object_get(rep.body, "bytes")), 7,
	   "7 bytes");
	is(json_integer_value(json_object_get(rep.body, "characters")), 6,
	   "6 characters");
	is(json_integer_value(json_object_get(rep.body, "lines")), 1, "1 line");
	reply_release(&rep);
	oneshot_run(&(struct oneshot){.method = "POST",
	                              .target = "/count",
	                              .body = "a\0b",
	                              .body_len = 3,
	                              .app = app},
	            &rep);
	is(rep.status, 415, "a NUL in the body: 415");
	is_str(detail(&rep), "the body must be UTF-8 text without NUL bytes",
	       "  the text rule answered");
	reply_release(&rep);
}

/* One request's reply: status, detail, and the 422's errors as
 * "pointer detail; pointer detail". */
static void
notes_shot(const char *method, const char *target, const char *const *headers,
           const char *body, unsigned int status, const char *want,
           const char *errors)
{
	struct reply rep;
	char got[1024] = "";
	size_t i, n = 0;
	json_t *e;

	oneshot_run(&(struct oneshot){.method = method,
	                              .target = target,
	                              .headers = headers,
	                              .body = body,
	                              .app = app},
	            &rep);
	is(rep.status, status, "%s %s %s: %u", method, target,
	   body != NULL ? body : "", status);
	is_str(detail(&rep), want, "  %s", want);
	json_array_foreach(json_object_get(rep.body, "errors"), i, e)
	{
		int w = snprintf(
		    got + n, sizeof(got) - n, "%s%s %s", i > 0 ? "; " : "",
		    json_string_value(json_object_get(e, "pointer")),
		    json_string_value(json_object_get(e, "detail")));

		if (w > 0 && (size_t)w < sizeof(got) - n)
			n += (size_t)w;
	}
	if (errors != NULL)
		is_str(got, errors, "  errors: %s", errors);
	reply_release(&rep);
}

/*
 * What /notes answers before any query (the harness has no database): the
 * body's shape (422, every error), a bad id or If-Match (400), and without
 * --database a 503 once the request itself is fine.
 */
/* /json and /plaintext made per request, with the benchmark's Server; the
 * World table's routes without a database: 503. */
static void
test_world(void)
{
	struct reply rep;
	char *text;

	run("GET", "/json", &rep);
	text = json_dumps(rep.body, JSON_COMPACT);
	is(rep.status, 200, "GET /json is 200");
	is_str(text, "{\"message\":\"Hello, World!\"}", "  its message");
	is_str(reply_content_type(&rep), "application/json", "  as JSON");
	is_str(header(&rep, "Server"), "microd", "  Server: microd");
	free(text);
	reply_release(&rep);
	run("GET", "/plaintext", &rep);
	is(rep.status, 200, "GET /plaintext is 200");
	ok(rep.text != NULL && rep.text_len == 13 &&
	       memcmp(rep.text, "Hello, World!", 13) == 0,
	   "  Hello, World!");
	is_str(reply_content_type(&rep), "text/plain", "  as text/plain");
	is_str(header(&rep, "Server"), "microd", "  Server: microd");
	reply_release(&rep);
	run("GET", "/queries?queries=3", &rep);
	is(rep.status, 503, "GET /queries without a database is 503");
	is_str(detail(&rep), "no database is configured", "  and says so");
	is_str(header(&rep, "Server"), "microd", "  Server on the problem too");
	reply_release(&rep);
}

static void
test_notes(void)
{
	static const char *const patch[] = {
	    "Content-Type: application/merge-patch+json", NULL};
	static const char *const text[] = {"Content-Type: text/plain", NULL};
	static const char *const star[] = {"If-Match: *", NULL};
	static const char *const tags[] = {"If-Match: \"1\", W/\"2\" ,\"a,b\",",
	                                   NULL};
	static const char *const space[] = {"If-Match: \"a b\"", NULL};
	static const char *const bare[] = {"If-Match: 1", NULL};
	static const char *const open[] = {"If-Match: \"1", NULL};
	static const char *const after[] = {"If-Match: \"1\" x", NULL};
	static const char *const two[] = {"If-Match: **", NULL};
	static const char *const ctl[] = {"If-Match: \"a\tb\"", NULL};
	const char *no_db = "no database is configured";
	const char *bad_id =
	    "a note's id is an integer from 1 to 9223372036854775807";
	const char *bad_match =
	    "If-Match must be \"*\" or a list of entity tags";
	char big[4800], title[401];

	notes_shot("POST", "/notes", json_header, "{\"title\":\"t\"}", 503,
	           no_db, NULL);
	notes_shot("POST", "/notes", json_header, "{}", 422,
	           "the body does not fit: 1 error", "#/title is required");
	notes_shot("POST", "/notes", json_header,
	           "{\"title\":\"\",\"body\":1,\"tags\":[\"\",2,null,"
	           "\"123456789012345678901234567890123\"],\"x\":0,"
	           "\"a/b\":0}",
	           422, "the body does not fit: 8 errors",
	           "#/title must be 1 to 200 characters; #/body must be a "
	           "string; #/tags/0 must be 1 to 32 characters; #/tags/1 must "
	           "be a string; #/tags/2 must not be null; #/tags/3 must be 1 "
	           "to 32 characters; #/x is not a known field; #/a~1b is not "
	           "a known field");
	notes_shot("POST", "/notes", json_header,
	           "{\"title\":null,\"body\":null,\"tags\":[\"1\",\"2\",\"3\","
	           "\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
	           422, "the body does not fit: 3 errors",
	           "#/title must not be null; #/body must not be null; "
	           "#/tags must have at most 8 items");
	snprintf(big, sizeof(big),
	         "{\"title\":\"%0201d\",\"body\":\"%04097d\"}", 0, 0);
	notes_shot(
	    "POST", "/notes", json_header, big, 422,
	    "the body does not fit: 2 errors",
	    "#/title must be 1 to 200 characters; #/body must be at most "
	    "4096 bytes");
	/* 200 characters of 2 bytes each (é), 4096 bytes: both at their
	 * bound. */
	for (size_t i = 0; i < 200; i++)
		memcpy(title + 2 * i, "\xc3\xa9", 2);
	title[400] = '\0';
	snprintf(big, sizeof(big), "{\"title\":\"%s\",\"body\":\"%04096d\"}",
	         title, 0);
	notes_shot("POST", "/notes", json_header, big, 503, no_db, NULL);
	notes_shot("POST", "/notes", json_header, "[]", 422,
	           "the body does not fit: 1 error", "# must be an object");
	notes_shot(
	    "POST", "/notes", text, "{}", 415,
	    "the request body must be application/json or application/*+json",
	    NULL);

	notes_shot("PATCH", "/notes/1", patch, "{}", 503, no_db, NULL);
	notes_shot("PATCH", "/notes/1", json_header,
	           "{\"body\":null,\"tags\":null}", 503, no_db, NULL);
	notes_shot("PATCH", "/notes/1", patch,
	           "{\"title\":null,\"tags\":[\"a\",\"\"],\"id\":2}", 422,
	           "the body does not fit: 3 errors",
	           "#/title must not be null; #/tags/1 must be 1 to 32 "
	           "characters; #/id is not a known field");
	notes_shot("PATCH", "/notes/x", patch, "{\"title\":null}", 400, bad_id,
	           NULL);
	notes_shot(
	    "PATCH", "/notes/1", text, "{}", 415,
	    "the request body must be application/json or application/*+json",
	    NULL);

	notes_shot("GET", "/notes/1", NULL, NULL, 503, no_db, NULL);
	notes_shot("GET", "/notes/0", NULL, NULL, 400, bad_id, NULL);
	notes_shot("GET", "/notes/-1", NULL, NULL, 400, bad_id, NULL);
	notes_shot("GET", "/notes/1.0", NULL, NULL, 400, bad_id, NULL);
	notes_shot("GET", "/notes/%201", NULL, NULL, 400, bad_id, NULL);
	notes_shot("GET", "/notes/9223372036854775807", NULL, NULL, 503, no_db,
	           NULL);
	notes_shot("GET", "/notes/9223372036854775808", NULL, NULL, 400, bad_id,
	           NULL);
	notes_shot("GET", "/notes/1'%20OR%20'1'='1", NULL, NULL, 400, bad_id,
	           NULL);
	notes_shot("DELETE", "/notes/abc", NULL, NULL, 400, bad_id, NULL);

	notes_shot("GET", "/notes", NULL, NULL, 503, no_db, NULL);
	notes_shot("GET", "/notes?limit=1&after=0", NULL, NULL, 503, no_db,
	           NULL);
	notes_shot("GET", "/notes?limit=100", NULL, NULL, 503, no_db, NULL);
	notes_shot("GET", "/notes?limit=0", NULL, NULL, 400,
	           "limit must be an integer from 1 to 100", NULL);
	notes_shot("GET", "/notes?limit=101", NULL, NULL, 400,
	           "limit must be an integer from 1 to 100", NULL);
	notes_shot("GET", "/notes?limit", NULL, NULL, 400,
	           "limit must be an integer from 1 to 100", NULL);
	notes_shot("GET", "/notes?after=-1", NULL, NULL, 400,
	           "after must be an integer from 0 to 9223372036854775807",
	           NULL);
	notes_shot(
	    "GET", "/notes?after=1%3BDROP%20TABLE%20notes", NULL, NULL, 400,
	    "after must be an integer from 0 to 9223372036854775807", NULL);

	notes_shot("DELETE", "/notes/1", star, NULL, 503, no_db, NULL);
	notes_shot("DELETE", "/notes/1", tags, NULL, 503, no_db, NULL);
	notes_shot("DELETE", "/notes/1", bare, NULL, 400, bad_match, NULL);
	notes_shot("DELETE", "/notes/1", open, NULL, 400, bad_match, NULL);
	notes_shot("DELETE", "/notes/1", after, NULL, 400, bad_match, NULL);
	notes_shot("DELETE", "/notes/1", two, NULL, 400, bad_match, NULL);
	notes_shot("DELETE", "/notes/1", ctl, NULL, 400, bad_match, NULL);
	notes_shot("DELETE", "/notes/1", space, NULL, 400, bad_match, NULL);
	notes_shot("PUT", "/notes/1", NULL, NULL, 405,
	           "PUT is not allowed on /notes/1", NULL);
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
	test_count();
	test_notes();
	test_world();
	test_router_answers();
	test_query();
	app_stop(app);
	return done_testing();
}
