/* SPDX-License-Identifier: MIT */
/* app.c -- the application's context: set up, drain, tear down */
#include "app.h"

#include <stdlib.h>

#include "config.h"
#include "handlers.h"
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
	if (cfg->example_routes) {
		app->notes = notes_open();
		if (app->notes == NULL) {
			free(app);
			return NULL;
		}
	}
	return app;
}

void
app_drain(struct app *app)
{
	if (app->notes != NULL)
		notes_drain(app->notes);
}

void
app_stop(struct app *app)
{
	if (app == NULL)
		return;
	notes_close(app->notes);
	free(app);
}
