/* SPDX-License-Identifier: MIT */
/* app.c -- the application's context: set up, drain, tear down */
#include "app.h"

#include <stdlib.h>

#include "config.h"
#include "log.h"

struct app *
app_start(const struct config *cfg)
{
	struct app *app = calloc(1, sizeof(*app));

	if (app == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
#if MICROD_TEST_HOOKS
	/* Test builds only: a start hook that fails, for the suite. */
	if (getenv("MICROD_TEST_APP_FAIL") != NULL) {
		log_error("%s: MICROD_TEST_APP_FAIL is set", __func__);
		free(app);
		return NULL;
	}
#endif
	app->example_routes = cfg->example_routes;
	if (app->example_routes)
		log_info("example routes on: /status/{code}, /delay/{ms}, "
		         "/resolve/{host}, /count, /json, /plaintext, and "
		         "/notes, /db, /queries, /updates, which need "
		         "--database%s",
		         cfg->database != NULL ? "" : " (not set: 503)");
	return app;
}

void
app_drain(struct app *app)
{
	if (app->example_routes)
		log_info("example routes: the drain begins");
}

void
app_stop(struct app *app)
{
	if (app == NULL)
		return;
	if (app->example_routes)
		log_info("example routes: stopped");
	free(app);
}
