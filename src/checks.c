/* SPDX-License-Identifier: MIT */
/*
 * checks.c -- the health checks' threads: each check runs on its interval,
 * bounded by its timeout, and leaves its latest result for the probes
 */
#include "checks.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "db/db.h"
#include "log.h"
#include "outbound.h"
#include "server/server.h"
#include "state.h"
#include "trace.h"
#include "utf8.h"

enum check_kind { CHECK_POOL, CHECK_DRAIN, CHECK_DATABASE, CHECK_TARGET };

/* The pool check waits at least this long for a worker's answer. */
#define POOL_TIMEOUT_MIN_MS 1000

struct check {
	enum check_kind kind;
	unsigned int groups;
	struct health_target target; /* its name is the check's */
	long long interval_ms, timeout_ms;
	unsigned int threshold;
	struct health_state st; /* under the owner's lock */
	int threaded;           /* has a thread of its own, running */
	pthread_t thread;
	struct checks *owner;
};

struct checks {
	pthread_mutex_t lock; /* guards every check's st, and stop */
	pthread_cond_t wake;  /* stop was set */
	int stop;
	int stop_fd[2]; /* a pipe, written at halt: cuts a run short */
	struct server *srv;
	struct db_pool *db; /* the database check's; NULL: none */
	size_t n;
	struct check at[CHECKS_MAX];
};

/*
 * One run of a check: 0 when it passed, else -1 with why. o is the
 * connection of an http:// check, whose answer is still to be read to its
 * end (outbound_close_after_answer), else closed.
 */
static int
run_once(struct check *c, char *why, size_t len, struct outbound *o)
{
	const struct health_target *t = &c->target;
	struct outbound_target to = {.host = t->host, .port = t->port};
	char tp[TRACE_HEADER_LEN + 1];
	int status;

	if (c->kind == CHECK_POOL) {
		struct pool_check pc;

		if (server_check_pool(c->owner->srv, (int)c->timeout_ms,
		                      c->owner->stop_fd[0], &pc) != 0) {
			snprintf(why, len, "halted");
			return -1;
		}
		if (pc.answered + pc.full == pc.workers)
			return 0;
		snprintf(why, len,
		         "a worker thread did not answer GET /health in %lld "
		         "ms",
		         c->timeout_ms);
		return -1;
	}
	if (c->kind == CHECK_DATABASE)
		return db_ping(c->owner->db, (unsigned int)c->timeout_ms,
		               c->owner->stop_fd[0], why, len);
	if (outbound_open(o, &to, c->timeout_ms, c->owner->stop_fd[0], why,
	                  len) != 0)
		return -1;
	if (t->kind != HEALTH_HTTP) {
		outbound_close(o);
		return 0;
	}
	/* Each run is a trace of its own, so the dependency's log can be
	 * matched with the run's: a failure names it. */
	trace_outbound(NULL, tp);
	if (outbound_get(o, t->path, "microd-check", tp, &status, why, len) ==
	    0)
		return 0;
	/* "(trace " + 32 hex + ")": the trace-id is 3 + 32 into tp. */
	if (strlen(why) + 41 < len)
		snprintf(why + strlen(why), len - strlen(why), " (trace %.32s)",
		         tp + 3);
	return -1;
}

/* Records a run under the lock; logs a change of status once. */
static void
record(struct check *c, int passed, long long took_ns, const char *why)
{
	struct checks *cs = c->owner;
	enum health_status was;
	int changed;
	char clean[sizeof(c->st.reason)];

	/* A reason may quote a peer's bytes (its status line): the JSON
	 * body that shows it must get UTF-8. */
	utf8_sanitize(clean, sizeof(clean), why != NULL ? why : "");
	pthread_mutex_lock(&cs->lock);
	was = c->st.status;
	changed = health_record(&c->st, passed, c->threshold, took_ns,
	                        wall_ms(), clean);
	pthread_mutex_unlock(&cs->lock);
	if (changed && passed)
		log_info("check %s: %s -> pass", c->target.name,
		         was == HEALTH_UNKNOWN ? "not run" : "fail");
	else if (changed)
		log_warn("check %s: %s -> fail: %s", c->target.name,
		         was == HEALTH_UNKNOWN ? "not run" : "pass", clean);
}

static void *
check_main(void *arg)
{
	struct check *c = arg;
	struct checks *cs = c->owner;

	for (;;) {
		struct timespec until;
		long long start = now_ns();
		char why[160] = "";
		struct outbound o = {.fd = -1};
		int stopping, passed = run_once(c, why, sizeof(why), &o) == 0;
		long long took = now_ns() - start;

		pthread_mutex_lock(&cs->lock);
		stopping = cs->stop;
		pthread_mutex_unlock(&cs->lock);
		if (stopping) {
			outbound_close(&o);
			return NULL; /* a run cut short is no result */
		}
		record(c, passed, took, why);
		/* The run is recorded before, so a peer that keeps the
		 * connection open delays neither the result nor its duration.
		 */
		outbound_close_after_answer(&o);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)(c->interval_ms / 1000);
		until.tv_nsec += (long)(c->interval_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&cs->lock);
		while (!cs->stop && pthread_cond_timedwait(&cs->wake, &cs->lock,
		                                           &until) != ETIMEDOUT)
			;
		if (cs->stop) {
			pthread_mutex_unlock(&cs->lock);
			return NULL;
		}
		pthread_mutex_unlock(&cs->lock);
	}
}

static struct check *
add(struct checks *cs, enum check_kind kind, unsigned int groups,
    const char *name, const struct config *cfg)
{
	struct check *c = &cs->at[cs->n++];

	c->kind = kind;
	c->groups = groups;
	snprintf(c->target.name, sizeof(c->target.name), "%s", name);
	c->interval_ms = cfg->check_interval_ms;
	c->timeout_ms = cfg->check_timeout_ms;
	c->threshold = cfg->check_threshold;
	if (kind == CHECK_POOL) {
		/* A busy pool is not a wedged one: a tight --check-timeout
		 * meant for a dependency must not restart the process. One
		 * failure is enough, as the kubelet's failureThreshold and
		 * WatchdogSec already ask for more than one. */
		if (c->timeout_ms < POOL_TIMEOUT_MIN_MS)
			c->timeout_ms = POOL_TIMEOUT_MIN_MS;
		c->threshold = 1;
	}
	c->owner = cs;
	return c;
}

struct checks *
checks_new(const struct config *cfg, struct db_pool *db)
{
	struct checks *cs = calloc(1, sizeof(*cs));
	pthread_condattr_t attr;

	if (cs == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	pthread_mutex_init(&cs->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&cs->wake, &attr);
	pthread_condattr_destroy(&attr);
	cs->stop_fd[0] = cs->stop_fd[1] = -1;
	if (pipe(cs->stop_fd) != 0 ||
	    fcntl(cs->stop_fd[1], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(cs->stop_fd[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(cs->stop_fd[1], F_SETFD, FD_CLOEXEC) != 0) {
		log_error("%s: pipe: %s", __func__, strerror(errno));
		if (cs->stop_fd[0] >= 0) {
			close(cs->stop_fd[0]);
			close(cs->stop_fd[1]);
		}
		pthread_cond_destroy(&cs->wake);
		pthread_mutex_destroy(&cs->lock);
		free(cs);
		return NULL;
	}
	add(cs, CHECK_POOL, CHECK_LIVE, "pool", cfg);
	add(cs, CHECK_DRAIN, CHECK_READY, "drain", cfg);
	cs->db = db;
	if (db != NULL)
		add(cs, CHECK_DATABASE, CHECK_READY, "database", cfg);
	for (size_t i = 0; i < cfg->n_checks && cs->n < CHECKS_MAX; i++)
		add(cs, CHECK_TARGET, CHECK_READY, cfg->checks[i].name, cfg)
		    ->target = cfg->checks[i];
	return cs;
}

int
checks_run(struct checks *cs, struct server *srv, int by_watchdog)
{
	int err = 0;

	cs->srv = srv;
	for (size_t i = 0; i < cs->n && err == 0; i++) {
		struct check *c = &cs->at[i];

		if (c->kind == CHECK_DRAIN ||
		    (c->kind == CHECK_POOL && by_watchdog))
			continue;
		err = pthread_create(&c->thread, NULL, check_main, c);
		if (err != 0)
			log_error("%s: cannot start the thread of check %s: %s",
			          __func__, c->target.name, strerror(err));
		else
			c->threaded = 1;
	}
	if (err != 0) {
		checks_halt(cs);
		return -1;
	}
	return 0;
}

void
checks_record_pool(struct checks *cs, int passed, long long duration_ns)
{
	if (cs == NULL)
		return;
	record(&cs->at[0], passed, duration_ns,
	       passed ? NULL
	              : "a worker thread did not answer the watchdog's GET "
	                "/health");
}

/* The drain check's status: read, not run. */
static enum health_status
drain_status(void)
{
	return state_get() == STATE_READY ? HEALTH_PASS : HEALTH_FAIL;
}

size_t
checks_report(struct checks *cs, unsigned int group, struct check_report *out,
              size_t n)
{
	size_t got = 0;

	if (cs == NULL)
		return 0;
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < cs->n && got < n; i++) {
		const struct check *c = &cs->at[i];
		struct check_report *r = &out[got];

		if (!(c->groups & group))
			continue;
		snprintf(r->name, sizeof(r->name), "%s", c->target.name);
		r->groups = c->groups;
		r->st = c->st;
		if (c->kind == CHECK_DRAIN) { /* read, not run */
			enum state s = state_get();

			r->st.status = drain_status();
			r->st.ran_at_ms = wall_ms();
			snprintf(r->st.reason, sizeof(r->st.reason), "%s",
			         s == STATE_READY ? "" : state_name(s));
		}
		got++;
	}
	pthread_mutex_unlock(&cs->lock);
	return got;
}

int
checks_pass(struct checks *cs, unsigned int group, const char *const *exclude,
            size_t n_exclude)
{
	int pass = 1;

	if (cs == NULL)
		return 1; /* no checks, none failing */
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < cs->n && pass; i++) {
		const struct check *c = &cs->at[i];
		int skip = !(c->groups & group);

		for (size_t j = 0; j < n_exclude && !skip; j++)
			skip = strcmp(exclude[j], c->target.name) == 0;
		if (!skip)
			pass = health_passes(c->kind == CHECK_DRAIN
			                         ? drain_status()
			                         : c->st.status,
			                     group == CHECK_LIVE);
	}
	pthread_mutex_unlock(&cs->lock);
	return pass;
}

void
checks_render_metrics(struct checks *cs, FILE *f)
{
	struct check_report r[CHECKS_MAX];
	size_t n = checks_report(cs, CHECK_LIVE | CHECK_READY, r, CHECKS_MAX);

	fputs("# HELP microd_check_up 1 while the named check passes, else 0 "
	      "(also before its first run).\n"
	      "# TYPE microd_check_up gauge\n",
	      f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "microd_check_up{check=\"%s\",group=\"%s\"} %d\n",
		        r[i].name,
		        r[i].groups & CHECK_LIVE ? "liveness" : "readiness",
		        r[i].st.status == HEALTH_PASS);
	fputs("# HELP microd_check_duration_seconds How long the check's last "
	      "run took.\n"
	      "# TYPE microd_check_duration_seconds gauge\n",
	      f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "microd_check_duration_seconds{check=\"%s\"} %.6f\n",
		        r[i].name, (double)r[i].st.duration_ns / 1e9);
	fputs("# HELP microd_check_failures_total Failed runs of the check.\n"
	      "# TYPE microd_check_failures_total counter\n",
	      f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "microd_check_failures_total{check=\"%s\"} %llu\n",
		        r[i].name, r[i].st.failures);
}

void
checks_halt(struct checks *cs)
{
	if (cs == NULL)
		return;
	pthread_mutex_lock(&cs->lock);
	cs->stop = 1;
	pthread_cond_broadcast(&cs->wake);
	pthread_mutex_unlock(&cs->lock);
	/* A run under way sees the pipe readable and ends at once. */
	if (write(cs->stop_fd[1], "x", 1) < 0 && errno != EAGAIN)
		log_warn("%s: cannot cut the checks short: %s", __func__,
		         strerror(errno));
	for (size_t i = 0; i < cs->n; i++)
		if (cs->at[i].threaded)
			pthread_join(cs->at[i].thread, NULL);
	for (size_t i = 0; i < cs->n; i++)
		cs->at[i].threaded = 0;
}

void
checks_free(struct checks *cs)
{
	if (cs == NULL)
		return;
	checks_halt(cs);
	close(cs->stop_fd[0]);
	close(cs->stop_fd[1]);
	pthread_cond_destroy(&cs->wake);
	pthread_mutex_destroy(&cs->lock);
	free(cs);
}
