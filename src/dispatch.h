/* SPDX-License-Identifier: MIT */
/*
 * dispatch.h -- what happens between a whole request and its reply, the same
 * for the server and for a handler test: the body's JSON, the handler, and
 * the checks on what the handler answered. No libmicrohttpd.
 */
#ifndef MICROD_DISPATCH_H
#define MICROD_DISPATCH_H

#include <stddef.h>

#include "router.h"

/* Whether a Content-Type names JSON: application/json or a +json subtype
 * (application/merge-patch+json, RFC 6839), any case, optionally followed
 * by parameters. A ROUTE_JSON_BODY route gets 415 otherwise. */
int dispatch_is_json(const char *content_type);

/* The 415's detail when it does not. */
#define DISPATCH_NOT_JSON                                                      \
	"the request body must be application/json or application/*+json"

/*
 * For a ROUTE_JSON_BODY route: parses the len bytes at body (NULL: none)
 * into *out (the caller's to json_decref). 0, or -1 with rep filled: 413
 * when the body's nesting costs too much, 400 with the position when it is
 * not JSON.
 */
int dispatch_json(const char *body, size_t len, json_t **out,
                  struct reply *rep);

/*
 * Runs rt's handler. A reply no final response can have (a status outside
 * 200-599, or no body) becomes a 500, logged with the route.
 */
void dispatch_run(const struct route *rt, const struct request *req,
                  struct reply *rep);

#endif
