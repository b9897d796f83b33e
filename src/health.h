/* SPDX-License-Identifier: MIT */
/*
 * health.h -- named health checks as data: a dependency check's target as
 * the configuration gives it, and the rule that turns a check's runs into
 * its status; no I/O
 */
#ifndef MICROD_HEALTH_H
#define MICROD_HEALTH_H

#include <stddef.h>

enum health_kind { HEALTH_TCP, HEALTH_HTTP };

/* A check's name: 1 to HEALTH_NAME_MAX of [a-z0-9_-]. */
#define HEALTH_NAME_MAX 32
#define HEALTH_HOST_MAX 253
#define HEALTH_PATH_MAX 512

/* A dependency to check: connect to it, or GET a path of it. */
struct health_target {
	char name[HEALTH_NAME_MAX + 1];
	enum health_kind kind;
	char host[HEALTH_HOST_MAX + 1]; /* a name or an address, no brackets */
	unsigned int port;
	char path[HEALTH_PATH_MAX + 1]; /* HTTP: from its '/', query included */
};

/*
 * Parses "NAME=tcp://HOST:PORT" or "NAME=http://HOST:PORT[/PATH]" (an IPv6
 * address in brackets: "tcp://[::1]:5432"). 0, or -1 with *why set to what
 * is wrong (a static string).
 */
int health_parse_target(const char *spec, struct health_target *out,
                        const char **why);

/* Whether name is a valid check name. */
int health_name_valid(const char *name);

enum health_status { HEALTH_UNKNOWN, HEALTH_PASS, HEALTH_FAIL };

/* What a check's runs have shown. */
struct health_state {
	enum health_status status; /* UNKNOWN until its first run ends */
	unsigned int failing;      /* failed runs in a row */
	unsigned long long runs, failures;
	long long duration_ns; /* of the last run */
	long long ran_at_ms;   /* when the last run ended, Unix time */
	char reason[160];      /* why the last failed run failed */
};

/*
 * Records a run that passed or failed (with reason) and took duration_ns,
 * ending at at_ms. A check passes once a run passes; it fails once
 * threshold runs in a row have failed (a first run that fails counts at
 * once: UNKNOWN already fails readiness). Returns 1 when the status changed,
 * so the change is logged once.
 */
int health_record(struct health_state *st, int passed, unsigned int threshold,
                  long long duration_ns, long long at_ms, const char *reason);

/*
 * Whether a check in this status lets its group pass: a failed check never
 * does; one not run yet fails readiness but not liveness, so a start is
 * never taken for a wedge (and never becomes a restart).
 */
int health_passes(enum health_status s, int liveness);

/* "pass" or "fail" (UNKNOWN: "fail"), the health+json draft's words. */
const char *health_status_word(enum health_status s);

#endif
