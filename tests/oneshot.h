/* SPDX-License-Identifier: MIT */
/*
 * oneshot.h -- a handler test without a socket: one request made of literals
 * goes through the target rules, the router and the handler, with a real
 * struct app, and its reply comes back (as axum's Router::oneshot)
 */
#ifndef MICROD_ONESHOT_H
#define MICROD_ONESHOT_H

#include <stddef.h>

#include "request.h"

struct oneshot {
	const char *method; /* "GET", "PUT", ... */
	const char *target; /* as sent: "/notes/a?x=1", percent-encoded */
	/* "Name: value" lines, NULL-ended; NULL: no header. */
	const char *const *headers;
	const char *body;        /* NULL: none */
	size_t body_len;         /* 0: strlen(body) */
	struct app *app;         /* the service's context; may be NULL */
	struct runtime *runtime; /* microd's own state; may be NULL */
	unsigned int hide;       /* route flags left out, as the server's */
	size_t max_body;         /* --max-body; 0: its default, 1 MiB */
};

/*
 * Routes req over the joined table (router_join first) and runs what the
 * server would run once the whole request has arrived: the target's rules
 * (400), the router's 404, 405 and 400, the Content-Type (415) and JSON
 * (400, 413) of a ROUTE_JSON_BODY route, the route's body limit (413), then
 * the handler and the checks on its reply. The request runs on the calling
 * thread, ROUTE_BLOCKING or not; the before-handler chain is not run. rep
 * gets the reply (reply_release it). 0, or -1 when out of memory.
 */
int oneshot_run(const struct oneshot *req, struct reply *rep);

#endif
