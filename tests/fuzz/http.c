/* SPDX-License-Identifier: MIT */
/*
 * http.c -- fuzz target: arbitrary bytes as one HTTP connection into a real
 * libmicrohttpd daemon configured exactly as microd configures it (through
 * server_start), with microd's router and handlers behind it. The bytes go
 * over a socketpair handed to the daemon (server_exchange). Oracles: every
 * answer starts with a status line, and the pool still answers /health.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "builtin.h"
#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "server/server.h"
#include "state.h"

static struct server *srv; /* the daemon under test, for the whole run */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char words[][16] = {"microd",      "--bind",     "127.0.0.1",
	                           "--port",      "0",          "--threads",
	                           "2",           "--max-body", "64k",
	                           "--log-level", "error"};
	char *args[12];
	struct config cfg;
	char err[256];

	(void)argc;
	(void)argv;
	for (int i = 0; i < 11; i++)
		args[i] = words[i];
	args[11] = NULL;
	if (config_parse(&cfg, 11, args, err, sizeof(err)) != CONFIG_RUN) {
		fprintf(stderr, "fuzz: %s\n", err);
		abort();
	}
	log_setup(cfg.log_level, LOG_FORMAT_JSON, 0);
	if (router_join(builtin_routes, builtin_routes_count, app_routes,
	                app_routes_count) != 0 ||
	    metrics_init() != 0)
		abort();
	/* No example routes, so no app; no runtime: no checks, no chain. */
	srv = server_start(&cfg, -1, -1, NULL, NULL);
	if (srv == NULL)
		abort();
	state_set(STATE_READY);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned long runs;
	char out[4096];
	ssize_t n = server_exchange(srv, data, size, out, sizeof(out), 5000);

	/* Answered, or closed without an answer: never anything else. */
	if (n > 0 && strncmp(out, "HTTP/1.", 7) != 0) {
		fprintf(stderr, "fuzz: answer without a status line: %.80s\n",
		        out);
		abort();
	}
	if (++runs % 64 == 0 && server_self_check(srv, 5000) != 0) {
		fprintf(stderr, "fuzz: the pool stopped answering /health\n");
		abort();
	}
	return 0;
}
