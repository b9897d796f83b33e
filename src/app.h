/* SPDX-License-Identifier: MIT */
/*
 * app.h -- the application's context and its life cycle: where a service
 * built on microd keeps what its handlers share (a database pool, a cache),
 * set up before the first request and torn down after the last
 */
#ifndef MICROD_APP_H
#define MICROD_APP_H

#include "request.h"

struct checks;
struct config;
struct tls;
struct middleware;
struct notes;

/*
 * Every handler gets a pointer to this as req->app. Handlers run on many
 * threads at once, so what they change in it is atomic or locked. Add the
 * service's own members here and set them up in app_start.
 */
struct app {
	struct notes *notes; /* the example routes' store; NULL without
	                      * --example-routes */
	/* microd's own, set by main once the server runs: the health checks
	 * the probes read (NULL: none), and --health-details. */
	struct checks *checks;
	int health_details;
	struct tls *tls; /* the HTTPS certificate, for /metrics; NULL: none */
	/* The before-handler chain's state (rate limit, tokens); NULL: the
	 * chain is not run. */
	struct middleware *middleware;
};

/*
 * Called once, before the server starts and before the service manager is
 * told READY=1: open what the handlers need. NULL (after logging why) fails
 * the start with exit status 1.
 */
struct app *app_start(const struct config *cfg);

/*
 * The drain has begun (SIGTERM or SIGINT): /ready answers 503 from now on,
 * but requests are still served until the drain ends.
 */
void app_drain(struct app *app);

/* Every request is finished and no handler runs: close and free. NULL-safe.
 */
void app_stop(struct app *app);

#endif
