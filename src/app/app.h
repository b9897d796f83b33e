/* SPDX-License-Identifier: MIT */
/*
 * app.h -- the service's side of microd: its routes, and the context its
 * handlers share (a database pool, a cache), set up before the first request
 * and torn down after the last. The engine never includes this file: main
 * hands the rows and the context to it.
 */
#ifndef MICROD_APP_H
#define MICROD_APP_H

#include <stddef.h>

#include "router.h"

struct config;

/*
 * Every handler gets a pointer to this as req->app. Handlers run on many
 * threads at once, so what they change in it is atomic or locked. Add the
 * service's own members here and set them up in app_start. The database
 * pool is microd's (request_db(req)): the notes resource needs nothing here.
 */
struct app {
	int example_routes; /* --example-routes */
};

/* The service's route rows (src/app/routes.c), joined with microd's own at
 * start. */
extern const struct route app_routes[];
extern const size_t app_routes_count;

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
