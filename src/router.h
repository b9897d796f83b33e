/* SPDX-License-Identifier: MIT */
/* router.h -- map method + path to a handler and its path parameters */
#ifndef MICROD_ROUTER_H
#define MICROD_ROUTER_H

#include <stddef.h>

#include "request.h"

enum route_flag {
	ROUTE_JSON_BODY = 1, /* the body must be JSON; parsed into req->body */
	ROUTE_PROBE = 2,     /* a health probe: not access-logged when fine */
	ROUTE_RAW_BODY = 4,  /* the body, any type, as sent: req->raw */
	ROUTE_BLOCKING = 8,  /* may block: runs on the handler pool */
	ROUTE_EXAMPLE = 16,  /* served only with --example-routes */
	/* The before-handler chain (src/middleware.c) skips probe routes'
	 * rate limit and token check; these skip one on other routes. */
	ROUTE_NO_AUTH = 32,  /* open without a bearer token */
	ROUTE_NO_LIMIT = 64, /* not rate limited */
	ROUTE_METRICS = 128, /* needs a token only with --auth-metrics */
	/* A probe of one named check (/livez/{name}): a probe only when the
	 * name is a configured check's; any other name goes through the chain
	 * as a path no route serves. */
	ROUTE_PROBE_NAMED = 256,
};

/*
 * One row of the route table. path is a template: segments after each '/',
 * each either literal or a whole "{name}" (a letter or '_', then letters,
 * digits or '_'), e.g. "/users/{id}/keys/{key}".
 */
struct route {
	const char *method;
	const char *path;
	handler_fn *handler;
	unsigned int flags;
	size_t max_body; /* bytes; 0: --max-body */
};

enum route_match {
	ROUTE_FOUND,
	ROUTE_NOT_FOUND,
	ROUTE_BAD_METHOD,
	ROUTE_BAD_PARAM, /* matched, but a parameter decodes to '/' or a
	                  * control byte: 400 */
};

struct route_result {
	enum route_match match;
	/* FOUND and BAD_PARAM: the row; BAD_METHOD: a row whose template
	 * matched the path (so metrics and logs can name it); NOT_FOUND: NULL.
	 */
	const struct route *route;
	struct request_params params; /* FOUND: values point into buf */
	char allow[64];     /* BAD_METHOD: the methods the path answers to */
	const char *detail; /* BAD_PARAM: why; a static string */
};

/*
 * The matching rules, over any table (tests give their own):
 * - raw is the path as the client sent it, percent-encoded, without its
 *   query; "" is taken for "/". It is split on '/' first and each segment
 *   decoded after, so "%2F" is data, never a separator.
 * - A literal segment matches a segment that decodes to exactly it; {name}
 *   matches any non-empty segment. Segment counts must be equal: a trailing
 *   slash ("/users/1/") or an empty segment ("/users//1") is another path.
 * - Of the templates that match, the one with a literal where the others
 *   have a parameter, at the first segment where they differ, wins
 *   ("/users/me" over "/users/{id}"), among the rows for the method (HEAD is
 *   served by GET rows). A path that matches only rows for other methods is
 *   ROUTE_BAD_METHOD.
 * - A parameter that decodes to hold '/', a NUL or another control byte, or
 *   whose escapes are malformed, makes it ROUTE_BAD_PARAM.
 * Rows with any of the hide flags are left out. buf (room for strlen(raw) +
 * REQUEST_PARAMS_MAX bytes always suffices) takes the decoded values.
 */
enum route_match router_match(const struct route *table, size_t n,
                              const char *method, const char *raw,
                              unsigned int hide, char *buf, size_t len,
                              struct route_result *out);

/* Most rows the joined table holds. */
#define ROUTER_MAX 128

/*
 * Makes the table served: own's rows (microd's), then app's (the service's).
 * Called once at start, before any thread runs a request; router_check then
 * checks the whole. 0, or -1 when the rows pass ROUTER_MAX.
 */
int router_join(const struct route *own, size_t n_own, const struct route *app,
                size_t n_app);

/* router_match over the joined table. */
enum route_match router_find(const char *method, const char *raw,
                             unsigned int hide, char *buf, size_t len,
                             struct route_result *out);

/*
 * NULL when every row of the table is well formed (a template as above, at
 * most REQUEST_PARAMS_MAX parameters with distinct names, a method, a
 * handler, one body flag at most, no two rows served (not hidden) for the
 * same method and template), else a message naming the first bad row, in
 * msg.
 */
const char *router_check(const struct route *table, size_t n, unsigned int hide,
                         char *msg, size_t len);

/*
 * The joined table as served with the hide flags: router_check over it, and
 * no row's body limit past what the body budget lets one body have. 0, or
 * -1 with the reason in msg.
 */
int router_check_served(unsigned int hide, size_t body_budget, char *msg,
                        size_t len);

/* The table's size, and its rows by position (for per-route metrics). */
size_t router_count(void);
const struct route *router_at(size_t i);
/* The position of a row that router_find returned. */
size_t router_index(const struct route *rt);

/* Fills rep with the 404, 405 (and its Allow header) or 400 for a failed
 * match of req's path. */
void router_reply_unmatched(const struct route_result *res,
                            const struct request *req, struct reply *rep);

#endif
