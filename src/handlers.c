/* SPDX-License-Identifier: MIT */
/* handlers.c -- one function per endpoint: request in, status + JSON out */
#include "handlers.h"

#include <string.h>
#include <time.h>

#include "app.h"
#include "checks.h"
#include "metrics.h"
#include "number.h"
#include "reply.h"
#include "server.h"
#include "state.h"
#include "version.h"

void
handle_version(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200,
	           json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", "microd",
	                     "version", MICROD_VERSION, "commit", MICROD_COMMIT,
	                     "libmicrohttpd", server_library_version(),
	                     "jansson", jansson_version_str()));
}

static void
render_checks(void *arg, FILE *f)
{
	checks_render_metrics(arg, f);
}

void
handle_metrics(const struct request *req, struct reply *rep)
{
	size_t len = 0;
	char *text = metrics_render(
	    &len,
	    req->app != NULL && req->app->checks != NULL ? render_checks : NULL,
	    req->app != NULL ? req->app->checks : NULL);

	reply_text(rep, 200, text, len,
	           "text/plain; version=0.0.4; charset=utf-8");
}

void
handle_echo(const struct request *req, struct reply *rep)
{
	reply_json(rep, 200, json_incref(req->body));
}

#if MICROD_TEST_HOOKS
/*
 * Test builds only (make builds build/hooks/microd for the suite): blocks the
 * worker thread that runs it for ?ms= milliseconds (at most 30 s), the
 * honest way to wedge one worker of the pool.
 */
void
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
 * Test builds only: a reply with whatever status ?code= names (0 to 999),
 * with a body unless ?body=no, so the suite can see what microd does with a
 * handler that answers a status no response can have.
 */
void
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
