/* SPDX-License-Identifier: MIT */
/*
 * watchdog.c -- the service manager's watchdog: WATCHDOG=1 only while every
 * worker thread of the pool answers, checked from a thread of its own
 */
#include "watchdog.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "checks.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

struct watchdog {
	struct server *srv;
	struct checks *checks; /* its pool check, fed from here */
	const struct notifier *notifier;
	long long every_ms;
	int stop[2]; /* a pipe: written to stop the thread */
	pthread_t thread;
};

/* Sleeps until ms (monotonic), or returns 1 as soon as a stop is asked. */
static int
stopped_before(const struct watchdog *wd, long long ms)
{
	for (;;) {
		struct pollfd p = {.fd = wd->stop[0], .events = POLLIN};
		long long left = ms - now_ms();
		int r;

		if (left <= 0)
			return 0;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return 1; /* cannot wait: give up rather than spin */
	}
}

static void *
run(void *arg)
{
	struct watchdog *wd = arg;
	int was_ok = 1, was_full = 0;
	unsigned long long refused = server_refused(wd->srv);

	for (;;) {
		long long start = now_ms();
		struct pool_check c;
		int ok, full;

		if (server_check_pool(wd->srv, (int)wd->every_ms, wd->stop[0],
		                      &c) != 0)
			break;
		ok = c.answered + c.full == c.workers;
		/* Clients refused at the connection limit since the last
		 * round: busy, which is not wedged. */
		full = c.full > 0 || server_refused(wd->srv) != refused;
		refused = server_refused(wd->srv);
		metrics_watchdog_check(!ok    ? METRICS_CHECK_FAILED
		                       : full ? METRICS_CHECK_FULL
		                              : METRICS_CHECK_OK);
		checks_record_pool(wd->checks, ok,
		                   (now_ms() - start) * 1000000LL);
		if (ok && notify_send(wd->notifier, "WATCHDOG=1") != 0)
			log_warn("watchdog: cannot notify the service manager");
		if (ok != was_ok)
			log_msg(
			    ok ? LOG_INFO : LOG_ERROR,
			    ok ? "watchdog: every worker thread answers "
			         "again"
			       : "watchdog: %u of %u worker threads did not "
			         "answer GET /health; not pinging the "
			         "service manager",
			    c.workers - c.answered - c.full, c.workers);
		if (full != was_full)
			log_msg(full ? LOG_WARN : LOG_INFO,
			        full
			            ? "watchdog: the pool is at its connection "
			              "limit and refuses new connections; it "
			              "still answers, so it counts as alive"
			            : "watchdog: the pool has room for "
			              "connections again");
		was_ok = ok;
		was_full = full;
		if (stopped_before(wd, start + wd->every_ms))
			break;
	}
	return NULL;
}

struct watchdog *
watchdog_start(struct server *srv, const struct notifier *n, long long every_ms,
               struct checks *checks)
{
	struct watchdog *wd = calloc(1, sizeof(*wd));

	if (wd == NULL)
		goto fail;
#if MICROD_TEST_HOOKS
	/* Test builds only: a watchdog that cannot start, for the suite. */
	if (getenv("MICROD_TEST_WATCHDOG_FAIL") != NULL) {
		free(wd);
		goto fail;
	}
#endif
	wd->srv = srv;
	wd->checks = checks;
	wd->notifier = n;
	wd->every_ms = every_ms;
	if (pipe(wd->stop) != 0) {
		free(wd);
		goto fail;
	}
	if (pthread_create(&wd->thread, NULL, run, wd) != 0) {
		close(wd->stop[0]);
		close(wd->stop[1]);
		free(wd);
		goto fail;
	}
	return wd;
fail:
	log_error("watchdog: cannot start its thread");
	return NULL;
}

void
watchdog_stop(struct watchdog *wd)
{
	if (wd == NULL)
		return;
	if (write(wd->stop[1], "x", 1) != 1)
		log_warn("watchdog: cannot signal its thread to stop");
	pthread_join(wd->thread, NULL);
	close(wd->stop[0]);
	close(wd->stop[1]);
	free(wd);
}
