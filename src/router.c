/* SPDX-License-Identifier: MIT */
/* router.c -- the route table; map method + path to a handler */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "reply.h"

static const struct route routes[] = {
    {"GET", "/health", handle_health, ROUTE_PROBE},
    {"GET", "/ready", handle_ready, ROUTE_PROBE},
    {"GET", "/version", handle_version, 0},
    {"GET", "/metrics", handle_metrics, 0},
    {"POST", "/echo", handle_echo, ROUTE_JSON_BODY},
#if MICROD_TEST_HOOKS
    {"GET", "/test/block", handle_test_block, 0},
#endif
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static int
method_matches(const char *route_method, const char *method)
{
	if (strcmp(route_method, method) == 0)
		return 1;
	return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

enum route_match
router_find(const char *method, const char *path, const struct route **out)
{
	enum route_match match = ROUTE_NOT_FOUND;

	for (size_t i = 0; i < N_ROUTES; i++) {
		if (strcmp(routes[i].path, path) != 0)
			continue;
		if (method_matches(routes[i].method, method)) {
			*out = &routes[i];
			return ROUTE_FOUND;
		}
		if (match == ROUTE_NOT_FOUND)
			*out = &routes[i];
		match = ROUTE_BAD_METHOD;
	}
	return match;
}

size_t
router_count(void)
{
	return N_ROUTES;
}

const struct route *
router_at(size_t i)
{
	return i < N_ROUTES ? &routes[i] : NULL;
}

size_t
router_index(const struct route *rt)
{
	return (size_t)(rt - routes);
}

/* Appends ", name" (or just name, first) when it fits. */
static void
allow_append(char *buf, size_t len, const char *name)
{
	size_t used = strlen(buf);

	if (used + strlen(name) + 3 > len)
		return;
	snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", name);
}

/* "GET, HEAD, POST": every method the path answers to. */
static void
allow_list(const char *path, char *buf, size_t len)
{
	buf[0] = '\0';
	for (size_t i = 0; i < N_ROUTES; i++) {
		if (strcmp(routes[i].path, path) != 0)
			continue;
		allow_append(buf, len, routes[i].method);
		if (strcmp(routes[i].method, "GET") == 0)
			allow_append(buf, len, "HEAD");
	}
}

void
router_reply_unmatched(enum route_match match, const struct request *req,
                       struct reply *rep)
{
	if (match == ROUTE_BAD_METHOD) {
		reply_error(rep, 405, "%s is not allowed on %s", req->method,
		            req->path);
		allow_list(req->path, rep->allow, sizeof(rep->allow));
		return;
	}
	reply_error(rep, 404, "no route for %s %s", req->method, req->path);
}
