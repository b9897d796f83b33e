/* SPDX-License-Identifier: MIT */
/*
 * route.c -- fuzz target: the request view -> router -> handler -> reply
 * path, in process and fast. Input: method, NUL, path, NUL, body; the body is
 * parsed as the server parses it for routes that take JSON.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "metrics.h"
#include "reply.h"
#include "router.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return metrics_init() != 0 ? -1 : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 2), *method, *path, *body, *end;
	const struct route *rt = NULL;
	struct request req = {0};
	struct reply rep = {0};
	char buf[2048];
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

	switch (router_find(method, path, &rt)) {
	case ROUTE_FOUND:
		if (rt->flags & ROUTE_JSON_BODY) {
			req.body =
			    json_loadb(body, body_len, JSON_DECODE_ANY, &jerr);
			if (req.body == NULL) {
				reply_error(&rep, 400, "invalid JSON: %s",
				            jerr.text);
				break;
			}
		}
		rt->handler(&req, &rep);
		break;
	default:
		router_reply_unmatched(router_find(method, path, &rt), &req,
		                       &rep);
		break;
	}
	if (rep.status < 200 || rep.status > 599)
		abort();
	(void)reply_render(&rep, buf, sizeof(buf));
	reply_clear(&rep);
	json_decref(req.body);
	free(copy);
	return 0;
}
