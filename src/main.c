/* SPDX-License-Identifier: MIT */
/* main.c -- parse the configuration, run the server, drain on a signal */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"
#include "version.h"

/* How often the drain looks at the in-flight count. */
#define DRAIN_TICK_NS 5000000L

static long long
now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
signal_name(int sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/*
 * Waits until the requests in flight are done or the timeout passes. A
 * further signal ends the process at once, with status 1.
 */
static void
drain(struct server *srv, const sigset_t *sigs, unsigned int timeout_ms)
{
	const struct timespec tick = {0, DRAIN_TICK_NS};
	long long deadline = now_ms() + timeout_ms;
	unsigned int left;
	int sig;

	while ((left = server_in_flight(srv)) > 0 && now_ms() < deadline) {
		sig = sigtimedwait(sigs, NULL, &tick);
		if (sig > 0) {
			log_warn("%s again: exiting at once", signal_name(sig));
			_exit(1);
		}
		if (errno != EAGAIN && errno != EINTR) {
			log_error("%s: sigtimedwait failed", __func__);
			return;
		}
	}
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

	switch (config_parse(&cfg, argc, argv, err, sizeof(err))) {
	case CONFIG_HELP:
		config_usage(stdout);
		return 0;
	case CONFIG_VERSION:
		printf("microd %s\n", MICROD_VERSION);
		return 0;
	case CONFIG_ERROR:
		fprintf(stderr, "microd: %s\n", err);
		return 2;
	case CONFIG_RUN:
		break;
	}
	log_set_level(cfg.log_level);

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

	do {
		if (sigwait(&sigs, &sig) != 0) {
			log_error("sigwait failed");
			sig = SIGTERM;
		}
	} while (sig != SIGTERM && sig != SIGINT);

	log_info("%s: draining, at most %u ms", signal_name(sig),
	         cfg.shutdown_timeout_ms);
	server_quiesce(srv); /* on failure it logs; drain all the same */
	drain(srv, &sigs, cfg.shutdown_timeout_ms);
	server_stop(srv);
	log_info("stopped");
	return 0;
}
