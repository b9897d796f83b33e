/* SPDX-License-Identifier: MIT */
/*
 * config.c -- fuzz target: configuration parsing. The input is split at NUL
 * bytes into arguments; an argument "ENV=VALUE" whose name starts with
 * MICROD_ or is PORT is set in the environment instead (and unset after).
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

#define MAX_ARGS 32

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1), *args[MAX_ARGS + 2], *names[MAX_ARGS];
	int argc = 1, nenv = 0;
	struct config cfg;
	char err[256];

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	static char prog[] = "microd";

	args[0] = prog;
	for (char *p = copy; p < copy + size && argc <= MAX_ARGS;
	     p += strlen(p) + 1) {
		char *eq = strchr(p, '=');

		if (eq != NULL && p[0] != '-' &&
		    (strncmp(p, "MICROD_", 7) == 0 ||
		     strncmp(p, "PORT=", 5) == 0) &&
		    nenv < MAX_ARGS) {
			*eq = '\0';
			if (setenv(p, eq + 1, 1) == 0)
				names[nenv++] = p;
			continue;
		}
		args[argc++] = p;
	}
	args[argc] = NULL;
	switch (config_parse(&cfg, argc, args, err, sizeof(err))) {
	case CONFIG_ERROR:
		if (err[0] == '\0')
			abort(); /* every error says what is wrong */
		break;
	case CONFIG_RUN:
		if (cfg.threads == 0 || cfg.max_body == 0 ||
		    cfg.connection_limit == 0 || cfg.idle_timeout_s == 0)
			abort();
		break;
	default:
		break;
	}
	for (int i = 0; i < nenv; i++)
		unsetenv(names[i]);
	free(copy);
	return 0;
}
