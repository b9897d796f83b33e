/* SPDX-License-Identifier: MIT */
/*
 * middleware.h -- the before-handler chain: plain functions run in order
 * before a route's handler, each of which may answer (and so stop the
 * request) or pass; microd's own are the per-client rate limit and the
 * bearer-token check
 */
#ifndef MICROD_MIDDLEWARE_H
#define MICROD_MIDDLEWARE_H

#include <stdio.h>

#include "request.h"

struct config;
struct middleware;

/* Fields the chain asks the reply to carry, whatever answers; "": none. */
struct middleware_fields {
	char ratelimit_policy[64]; /* RateLimit-Policy */
	char ratelimit[64];        /* RateLimit */
	char www_authenticate[96]; /* WWW-Authenticate, with a 401 */
};

/*
 * One link of the chain. Returns 0 to pass to the next link (and at the end
 * to the route's handler), or 1 after filling rep: that reply is sent and
 * the handler never runs. flags are the route's (enum route_flag); a link
 * is skipped for a route with any of its exempt flags.
 */
typedef int middleware_fn(struct middleware *mw, const struct request *req,
                          unsigned int flags, struct reply *rep,
                          struct middleware_fields *out);

struct middleware_link {
	const char *name;
	middleware_fn *fn;
	unsigned int exempt;
};

/*
 * Sets up what the links need from cfg (the token file, the rate-limit
 * table). NULL with one line in err (a token file that does not read: the
 * start fails with status 2).
 */
struct middleware *middleware_open(const struct config *cfg, char *err,
                                   size_t len);

/* Logs a warning for each of cfg's chain settings that do nothing as given,
 * or trust every peer (once the log is set up). */
void middleware_warn(const struct config *cfg);

/* Logs what the chain does (once the log is set up). */
void middleware_describe(struct middleware *mw);

/* Whether every link skips a route with these flags (the probes), so a
 * request on it needs nothing set up for the chain. */
int middleware_skips(unsigned int flags);

/* Runs the chain for a route with these flags: 1 when a link answered. */
int middleware_run(struct middleware *mw, const struct request *req,
                   unsigned int flags, struct reply *rep,
                   struct middleware_fields *out);

/* SIGHUP: the token file read again. 0 when there is none or it read. */
int middleware_reload(struct middleware *mw);

/* Whether a token file is in use (so a reload has something to do). */
int middleware_has_auth(const struct middleware *mw);

/* The chain's metrics, in the Prometheus text format. */
void middleware_render_metrics(struct middleware *mw, FILE *f);

/* NULL-safe. */
void middleware_close(struct middleware *mw);

#endif
