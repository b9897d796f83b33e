/* SPDX-License-Identifier: MIT */
/* router.h -- map method + path to a handler */
#ifndef MICROD_ROUTER_H
#define MICROD_ROUTER_H

#include "request.h"

enum route_flag {
	ROUTE_JSON_BODY = 1, /* the body must be JSON; parsed into req->body */
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
 * set only for ROUTE_FOUND.
 */
enum route_match router_find(const char *method, const char *path,
                             const struct route **out);

/* Fills rep with the 404 or 405 (and its Allow header) for a failed match. */
void router_reply_unmatched(enum route_match match, const struct request *req,
                            struct reply *rep);

#endif
