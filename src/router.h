/* SPDX-License-Identifier: MIT */
/* router.h -- map method + path to a handler */
#ifndef MICROD_ROUTER_H
#define MICROD_ROUTER_H

#include <stddef.h>

#include "request.h"

enum route_flag {
	ROUTE_JSON_BODY = 1, /* the body must be JSON; parsed into req->body */
	ROUTE_PROBE = 2,     /* a health probe: not access-logged when fine */
};

struct route {
	const char *method;
	const char *path;
	handler_fn *handler;
	unsigned int flags;
};

enum route_match { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_BAD_METHOD };

/*
 * Finds the route for method + path; HEAD is served by GET routes. *out is
 * set for ROUTE_FOUND and, for ROUTE_BAD_METHOD, to a row with that path (so
 * metrics and logs can name the route pattern); never for ROUTE_NOT_FOUND.
 */
enum route_match router_find(const char *method, const char *path,
                             const struct route **out);

/* The table's size, and its rows by position (for per-route metrics). */
size_t router_count(void);
const struct route *router_at(size_t i);
/* The position of a row that router_find returned. */
size_t router_index(const struct route *rt);

/* Fills rep with the 404 or 405 (and its Allow header) for a failed match. */
void router_reply_unmatched(enum route_match match, const struct request *req,
                            struct reply *rep);

#endif
