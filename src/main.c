/* SPDX-License-Identifier: MIT */
/* main.c -- parse the configuration, run the server, drain on a signal */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "server.h"
#include "state.h"
#include "version.h"

/* How often the drain looks at the in-flight count. */
#define DRAIN_TICK_NS 5000000L

/*
 * With every request answered, idle keep-alive connections may still be open;
 * their clients can send a request at any moment. The drain waits until they
 * are closed, or until no request has been in flight for this long.
 */
#define DRAIN_QUIET_MS 250

static long long
now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* $JOURNAL_STREAM names stderr's device and inode when journald reads it. */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

static const char *
signal_name(int sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/* Sleeps one tick; a further stop signal ends the process at once. */
static void
tick(const sigset_t *sigs)
{
	const struct timespec ts = {0, DRAIN_TICK_NS};
	int sig = sigtimedwait(sigs, NULL, &ts);

	if (sig > 0) {
		log_warn("%s again: exiting at once", signal_name(sig));
		_exit(1);
	}
}

static int
drained(const struct server *srv, long long *quiet_since)
{
	long long now = now_ms();

	if (server_in_flight(srv) > 0) {
		*quiet_since = now;
		return 0;
	}
	return server_connections(srv) == 0 ||
	       now - *quiet_since >= DRAIN_QUIET_MS;
}

/*
 * ready -> draining: /ready answers 503, serving goes on for the delay.
 * draining -> stopping: no new connections, Connection: close on every
 * reply, until nothing is in flight or the timeout passes.
 */
static void
shut_down(struct server *srv, const struct config *cfg, const sigset_t *sigs)
{
	long long deadline = now_ms() + cfg->drain_delay_ms;
	long long quiet_since = now_ms();
	unsigned int left;

	state_set(STATE_DRAINING);
	while (now_ms() < deadline)
		tick(sigs);

	server_quiesce(srv); /* on failure it logs; drain all the same */
	state_set(STATE_STOPPING);
	deadline = now_ms() + cfg->shutdown_timeout_ms;
	while (!drained(srv, &quiet_since) && now_ms() < deadline)
		tick(sigs);
	left = server_in_flight(srv);
	if (left > 0)
		log_warn("shutdown timeout passed: cutting %u requests in "
		         "flight",
		         left);
	else
		log_info("drained: no request in flight");
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct server *srv;
	sigset_t sigs;
	char err[256];
	int sig;

	if (argc > 1 && strcmp(argv[1], "probe") == 0)
		return probe_main(argc - 1, argv + 1);

	switch (config_parse(&cfg, argc, argv, err, sizeof(err))) {
	case CONFIG_HELP:
		config_usage(stdout);
		return 0;
	case CONFIG_VERSION:
		printf("microd %s (commit %s)\n", MICROD_VERSION,
		       MICROD_COMMIT);
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "microd: %s\n", err);
		return 2;
	case CONFIG_RUN:
		break;
	}
	log_setup(cfg.log_level,
	          cfg.log_format >= 0     ? cfg.log_format
	          : isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT
	                                  : LOG_FORMAT_JSON,
	          stderr_is_journal());
	if (metrics_init() != 0) {
		log_error("the route table outgrew the metrics table");
		return 1;
	}

	/* Masked before the pool starts, so its threads inherit the mask and
	 * only sigwait() below ever sees these. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0) {
		log_error("cannot block signals");
		return 1;
	}
	sigdelset(&sigs, SIGPIPE);

	log_info("microd %s: %u threads, max body %zu bytes, shutdown "
	         "timeout %u ms",
	         MICROD_VERSION, cfg.threads, cfg.max_body,
	         cfg.shutdown_timeout_ms);
	srv = server_start(&cfg);
	if (srv == NULL)
		return 1;

	state_set(STATE_READY);

	do {
		if (sigwait(&sigs, &sig) != 0) {
			log_error("sigwait failed");
			sig = SIGTERM;
		}
	} while (sig != SIGTERM && sig != SIGINT);

	log_info("%s: drain delay %u ms, then at most %u ms for requests in "
	         "flight",
	         signal_name(sig), cfg.drain_delay_ms, cfg.shutdown_timeout_ms);
	shut_down(srv, &cfg, &sigs);
	server_stop(srv);
	state_set(STATE_STOPPED);
	return 0;
}
