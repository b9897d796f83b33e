/* SPDX-License-Identifier: MIT */
/*
 * route.c -- fuzz target: the request view -> router -> handler -> reply
 * path, in process and fast. Input: method, NUL, raw path, NUL, body; the
 * body is parsed as the server parses it for routes that take JSON. The
 * example routes are on, all but /delay and /resolve, which only wait;
 * /notes has no database here: its checks run, then it answers 503.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/handlers.h"
#include "builtin.h"
#include "config.h"
#include "fuzz.h"
#include "metrics.h"
#include "reply.h"
#include "router.h"

static struct app *app;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config cfg = {.example_routes = 1};

	(void)argc;
	(void)argv;
	app = app_start(&cfg);
	return router_join(builtin_routes, builtin_routes_count, app_routes,
	                   app_routes_count) != 0 ||
	               metrics_init() != 0 || app == NULL
	           ? -1
	           : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 2), *method, *path, *body, *end;
	struct route_result res;
	struct request req = {0};
	struct reply rep = {0};
	char buf[2048], *params;
	json_error_t jerr;
	size_t body_len;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = copy[size + 1] = '\0';
	method = copy;
	path = method + strlen(method) + 1;
	end = copy + size;
	if (path > end)
		path = end;
	body = path + strlen(path);
	body = body < end ? body + 1 : end;
	body_len = (size_t)(end - body);
	req.method = method;
	req.path = path;
	req.app = app;
	req.params = &res.params;
	params = malloc(strlen(path) + REQUEST_PARAMS_MAX);
	if (params == NULL) {
		free(copy);
		return 0;
	}

	switch (router_find(method, path, 0, params,
	                    strlen(path) + REQUEST_PARAMS_MAX, &res)) {
	case ROUTE_FOUND:
		/* /delay only sleeps; /resolve would ask the resolver. */
		if (res.route->handler == handle_delay ||
		    res.route->handler == handle_resolve) {
			reply_json(&rep, 200, json_object());
			break;
		}
		req.raw = body;
		req.raw_len = body_len;
		if (res.route->flags & ROUTE_JSON_BODY) {
			req.body =
			    json_loadb(body, body_len, JSON_DECODE_ANY, &jerr);
			if (req.body == NULL) {
				reply_error(&rep, 400, "invalid JSON: %s",
				            jerr.text);
				break;
			}
		}
		res.route->handler(&req, &rep);
		break;
	default:
		router_reply_unmatched(&res, &req, &rep);
		break;
	}
	if (rep.status < 200 || rep.status > 599)
		abort();
	{
		size_t n;

		(void)reply_render(&rep, buf, sizeof(buf), &n);
	}
	reply_release(&rep);
	json_decref(req.body);
	free(params);
	free(copy);
	return 0;
}
