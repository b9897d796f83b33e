/* SPDX-License-Identifier: MIT */
/*
 * checks.h -- the named health checks in their liveness and readiness
 * groups: each run on a thread of its own, on its interval, bounded by its
 * timeout; the probes only read the latest results
 */
#ifndef MICROD_CHECKS_H
#define MICROD_CHECKS_H

#include <stddef.h>
#include <stdio.h>

#include "health.h"

struct config;
struct db_pool;
struct server;

enum check_group { CHECK_LIVE = 1, CHECK_READY = 2 };

/* Most checks: the built-in ones and the configured ones. */
#define CHECKS_MAX 20

struct check_report {
	char name[HEALTH_NAME_MAX + 1];
	unsigned int groups;
	struct health_state st;
};

struct checks;

/*
 * The checks, not yet running: "pool" (liveness: every worker thread of the
 * server answers a GET /health), "drain" (readiness: not starting or
 * draining), with db "database" (readiness: a connection of db answers
 * SELECT 1 within the check timeout; db must outlive the checks' threads)
 * and every --check of cfg (readiness). NULL on failure (logged).
 */
struct checks *checks_new(const struct config *cfg, struct db_pool *db);

/*
 * Starts a thread per check that runs (when by_watchdog, the watchdog's own
 * checks are the pool check's runs, so the pool is not checked twice). 0, or
 * -1 (logged; the threads started are stopped).
 */
int checks_run(struct checks *c, struct server *srv, int by_watchdog);

/* Stops and joins the threads (before the server stops). NULL-safe. */
void checks_halt(struct checks *c);

/* A run of the "pool" check, from the watchdog. NULL-safe. */
void checks_record_pool(struct checks *c, int passed, long long duration_ns);

/*
 * The checks of group (CHECK_LIVE or CHECK_READY), as they stand, into out
 * (room for n); their count.
 */
size_t checks_report(struct checks *c, unsigned int group,
                     struct check_report *out, size_t n);

/*
 * Whether group passes (health_passes of each check), leaving out the
 * checks named in exclude; without copying, for the probes' usual path.
 * With no checks (NULL), 1.
 */
int checks_pass(struct checks *c, unsigned int group,
                const char *const *exclude, size_t n_exclude);

/* Every check's metrics in the Prometheus text format, onto f. */
void checks_render_metrics(struct checks *c, FILE *f);

/* Frees c, once no probe can read it. NULL-safe. */
void checks_free(struct checks *c);

#endif
