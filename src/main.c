/* SPDX-License-Identifier: MIT */
/* main.c -- parse the configuration, run the server, drain on a signal */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "activation.h"
#include "app/app.h"
#include "app/sql.h"
#include "app/statements.h"
#include "builtin.h"
#include "checks.h"
#include "clock.h"
#include "config.h"
#include "db/db.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "migrate.h"
#include "notify.h"
#include "otel.h"
#include "otelconf.h"
#include "probe.h"
#include "refusal.h"
#include "router.h"
#include "runtime.h"
#include "server/server.h"
#include "state.h"
#include "tls.h"
#include "version.h"
#include "watchdog.h"

/* How often the drain looks at the in-flight count. */
#define DRAIN_TICK_NS 5000000L

/*
 * With every request answered, idle keep-alive connections may still be open;
 * their clients can send a request at any moment. The drain waits until they
 * are closed, or until no request has been in flight for this long.
 */
#define DRAIN_QUIET_MS 250

/*
 * A connection accepted just before the drain stopped accepting has a client
 * that is about to send its first request; closing it would fail a request
 * that reached microd in time. The drain waits up to this long after it
 * stops accepting for such connections to begin their request.
 */
#define DRAIN_FIRST_REQUEST_MS 1000

/*
 * While draining, the service manager's stop timeout is pushed out this far
 * at a time (EXTEND_TIMEOUT_USEC), renewed every EXTEND_EVERY_MS: a drain that
 * is still making progress is never killed for being slow; microd's own
 * --shutdown-timeout bounds it.
 */
#define EXTEND_MS 5000

/* How long the last lines may take to reach stderr before an exit. */
#define LOG_FLUSH_MS 2000
#define LOG_LAST_WORDS_MS 100
#define FLUSH_SLICE_MS 20

/* Descriptors microd needs besides its connections. */
#define FD_RESERVE 32
#define EXTEND_EVERY_MS 1000

/* What the main thread tells the service manager, and when. */
struct supervisor {
	struct notifier notifier;
	struct server *srv;
	struct app *app;
	struct runtime runtime;  /* microd's own, for its routes */
	long long ping_every_ms; /* 0: no watchdog */
	struct watchdog *watchdog;
	long long next_extend_ms;
	struct tls *tls; /* with --tls-cert: the HTTPS certificate */
	struct middleware *middleware; /* the before-handler chain's state */
	struct otelconf otel;          /* the OTEL_* variables */
};

/* getenv, as otelconf_parse reads the environment. */
static const char *
env_get(const char *name)
{
	return getenv(name);
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

/*
 * Every connection is a descriptor: lift the soft RLIMIT_NOFILE to the hard
 * one (as Go's runtime does), and say so when the connection limit still
 * cannot be reached.
 */
static void
raise_fd_limit(unsigned int connections)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 &&
		    getrlimit(RLIMIT_NOFILE, &rl) != 0)
			return;
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < (rlim_t)connections + FD_RESERVE)
		log_warn("the open-file limit (%llu) is below the connection "
		         "limit %u plus %d: raise it (LimitNOFILE=, ulimit -n) "
		         "or lower --connection-limit",
		         (unsigned long long)rl.rlim_cur, connections,
		         FD_RESERVE);
}

static const char *
signal_name(int sig)
{
	return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/* How often the main thread looks whether memory can go back (server_trim). */
#define TRIM_EVERY_S 1

/*
 * The last lines go out while a further stop signal still ends the process
 * at once: the flush waits in slices and looks for a signal between them.
 */
static void
flush_log(const sigset_t *sigs)
{
	const struct timespec none = {0, 0};
	long long until = now_ms() + LOG_FLUSH_MS;

	while (log_stop(FLUSH_SLICE_MS) != 0 && now_ms() < until) {
		int sig = sigtimedwait(sigs, NULL, &none);

		if (sig > 0 && sig != SIGHUP) /* a second stop signal */
			_exit(1);
	}
}

/* Waits for a stop signal, trimming memory now and then. */
static int
wait_signal(struct supervisor *sv, const sigset_t *sigs)
{
	const struct timespec ts = {TRIM_EVERY_S, 0};

	for (;;) {
		int sig = sigtimedwait(sigs, NULL, &ts);

		if (sig > 0)
			return sig;
		if (errno != EAGAIN && errno != EINTR) {
			log_error("sigtimedwait failed: %s", strerror(errno));
			return SIGTERM;
		}
		server_trim(sv->srv);
		if (sv->tls != NULL) /* a changed file is a new certificate */
			tls_reload(sv->tls, 0);
	}
}

/*
 * SIGHUP: the certificate and key, and the token file, read again, whether
 * or not they changed, with the service manager told (Type=notify-reload's
 * protocol; harmless under ExecReload=kill -HUP). Without either there is
 * nothing to reload.
 */
static void
reload(struct supervisor *sv)
{
	struct timespec now;

	if (sv->tls == NULL && !middleware_has_auth(sv->middleware)) {
		log_info("SIGHUP: nothing to reload (no --tls-cert, no "
		         "--auth-token-file)");
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	notify_send(&sv->notifier, "RELOADING=1\nMONOTONIC_USEC=%lld",
	            (long long)now.tv_sec * 1000000LL + now.tv_nsec / 1000);
	if (sv->tls != NULL) {
		log_info("SIGHUP: reading the certificate and key again");
		tls_reload(sv->tls, 1);
	}
	if (middleware_has_auth(sv->middleware)) {
		log_info("SIGHUP: reading the token file again");
		(void)middleware_reload(sv->middleware); /* logs a failure */
	}
	notify_send(&sv->notifier, "READY=1");
}

/*
 * Sleeps one tick of the drain, keeping the stop timeout fed (the watchdog
 * feeds itself); a further stop signal ends the process at once.
 */
static void
tick(struct supervisor *sv, const sigset_t *sigs)
{
	const struct timespec ts = {0, DRAIN_TICK_NS};
	int sig = sigtimedwait(sigs, NULL, &ts);

	if (sig == SIGHUP) { /* a reload asks nothing of a stop */
		log_info("SIGHUP during the stop: ignored");
		return;
	}
	if (sig > 0) {
		/* Acted on first; the line gets a moment, never more. */
		log_warn("%s again: exiting at once", signal_name(sig));
		log_stop(LOG_LAST_WORDS_MS);
		_exit(1);
	}
	if (now_ms() >= sv->next_extend_ms) {
		sv->next_extend_ms = now_ms() + EXTEND_EVERY_MS;
		notify_send(&sv->notifier, "EXTEND_TIMEOUT_USEC=%lld",
		            (long long)EXTEND_MS * 1000);
	}
}

static int
drained(const struct server *srv, long long *quiet_since,
        long long first_request_until)
{
	long long now = now_ms();

	if (server_in_flight(srv) > 0) {
		*quiet_since = now;
		return 0;
	}
	if (server_connections(srv) == 0)
		return 1;
	if (server_waiting(srv) > 0 && now < first_request_until)
		return 0;
	return now - *quiet_since >= DRAIN_QUIET_MS;
}

/*
 * ready -> draining: /ready answers 503, serving goes on for the delay.
 * draining -> stopping: no new connections, Connection: close on every
 * reply, until nothing is in flight or the timeout passes.
 */
static void
shut_down(struct supervisor *sv, const struct config *cfg, const sigset_t *sigs)
{
	struct server *srv = sv->srv;
	long long deadline = now_ms() + cfg->drain_delay_ms;
	long long quiet_since, first_request_until;
	unsigned int left;

	state_set(STATE_DRAINING);
	app_drain(sv->app);
	notify_send(&sv->notifier,
	            "STOPPING=1\nSTATUS=draining: /ready answers 503 for "
	            "%u ms, then at most %u ms for requests in flight\n"
	            "EXTEND_TIMEOUT_USEC=%lld",
	            cfg->drain_delay_ms, cfg->shutdown_timeout_ms,
	            (long long)EXTEND_MS * 1000);
	sv->next_extend_ms = now_ms() + EXTEND_EVERY_MS;
	while (now_ms() < deadline)
		tick(sv, sigs);

	server_quiesce(srv); /* on failure it logs; drain all the same */
	/* The quiet period counts from here: idle keep-alive clients get all
	 * of it, however long the delay was. */
	quiet_since = now_ms();
	state_set(STATE_STOPPING);
	notify_send(&sv->notifier, "STATUS=stopping: waiting for requests in "
	                           "flight");
	deadline = now_ms() + cfg->shutdown_timeout_ms;
	first_request_until = now_ms() + DRAIN_FIRST_REQUEST_MS;
	while (!drained(srv, &quiet_since, first_request_until) &&
	       now_ms() < deadline)
		tick(sv, sigs);
	left = server_in_flight(srv);
	if (left > 0)
		log_warn("shutdown timeout passed: cutting %u requests in "
		         "flight",
		         left);
	else
		log_info("drained: no request in flight");
}

/*
 * Under socket activation, the connection that started microd (and any
 * queued behind it) would start it again the moment it exits: they get a
 * 503 naming the bad setting instead, and the socket waits for the next.
 */
static void
refuse_waiting(const char *why)
{
	char err[256], detail[320];
	int tls_fd, fd = activation_listen_fd(err, sizeof(err), &tls_fd);

	if (tls_fd >= 0) /* a 503 over plain text would not be TLS */
		close(tls_fd);
	if (fd < 0)
		return;
	snprintf(detail, sizeof(detail), "microd cannot start: %s", why);
	if (refusal_answer(fd, detail) < 0)
		fprintf(stderr,
		        "%smicrod: cannot answer the clients waiting "
		        "on the socket\n",
		        stderr_is_journal() ? "<3>" : "");
}

/* A start that fails before the server runs: what was opened is closed
 * (the token digests, the certificate), and the exit status is 1. */
static int
end_early(struct supervisor *sv)
{
	middleware_close(sv->middleware);
	tls_close(sv->tls);
	return 1;
}

/* A start refused for bad usage: the reason on stderr, before the logger
 * (journald reads the priority from the prefix: 3, err, so journalctl -p err
 * shows why), and to the clients waiting on a passed socket. Exit 2. */
static int
refuse_start(const char *err)
{
	fprintf(stderr, "%smicrod: %s\n", stderr_is_journal() ? "<3>" : "",
	        err);
	refuse_waiting(err);
	return 2;
}

/* How long the start's schema check may take: connect and describe. */
#define SCHEMA_CHECK_MS 5000

/*
 * The statement table against the database's schema (db_schema_check):
 * -1 when it does not match, else 0; a database that cannot be reached, or
 * pending migrations, skip the check (the database check makes it later).
 * For --check-config (printed: the finding on stdout, a mismatch on
 * stderr), else logged.
 */
static int
check_statements(const struct config *cfg, int printed)
{
	char why[512];
	enum db_schema_result got = db_schema_check(
	    cfg->database, app_statements, app_statements_count, app_migrations,
	    app_migrations_count, SCHEMA_CHECK_MS, why, sizeof(why));

	if (got == DB_SCHEMA_MISMATCH) {
		if (printed)
			fprintf(stderr, "microd: %s\n", why);
		else
			log_error("database: %s: not started", why);
		return -1;
	}
	if (printed)
		printf("statements: %s%s\n",
		       got == DB_SCHEMA_OK ? "all match the schema"
		                           : "not checked: ",
		       got == DB_SCHEMA_OK ? "" : why);
	else if (got == DB_SCHEMA_OK)
		log_info("database: the %u statements match the schema",
		         app_statements_count);
	else
		log_warn("database: statements not checked at start (%s): the "
		         "database check does it once it can",
		         why);
	return 0;
}

/*
 * With --database, before the pool opens and before READY=1: --migrate's
 * migrations, then the statement check. 0 to go on, else the exit status:
 * microd migrate's, or 2 for statements that do not match the schema.
 */
static int
ready_database(const struct config *cfg)
{
	int status;

	if (cfg->database == NULL)
		return 0;
	if (cfg->migrate) {
		status = db_migrate(cfg->database, app_migrations,
		                    app_migrations_count, 0);
		if (status != 0) {
			log_error("--migrate: the migrations failed (exit %d, "
			          "as microd migrate): not started",
			          status);
			return status;
		}
	}
	return check_statements(cfg, 0) == 0 ? 0 : 2;
}

/*
 * The settings: flags and environment, then the certificate and the token
 * file, which cannot serve is bad usage too. -1 to go on and serve, else the
 * exit status (--help, --version, --check-config, a refusal).
 */
static int
open_settings(struct supervisor *sv, struct config *cfg, int argc, char **argv)
{
	char err[256];

	switch (config_parse(cfg, argc, argv, err, sizeof(err))) {
	case CONFIG_HELP:
		config_usage(stdout);
		return 0;
	case CONFIG_VERSION:
		printf("microd %s (commit %s)\n", MICROD_VERSION,
		       MICROD_COMMIT);
		return 0;
	case CONFIG_ERROR:
		return refuse_start(err);
	case CONFIG_RUN:
		break;
	}
	if (otelconf_parse(&sv->otel, env_get, err, sizeof(err)) != 0)
		return refuse_start(err);
	if (cfg->tls_cert != NULL) {
		if (tls_check_priorities(cfg->tls_priorities, err,
		                         sizeof(err)) == 0)
			sv->tls = tls_open(cfg->tls_cert, cfg->tls_key, err,
			                   sizeof(err));
		if (sv->tls == NULL)
			return refuse_start(err);
	}
	sv->middleware = middleware_open(cfg, err, sizeof(err));
	if (sv->middleware == NULL) {
		tls_close(sv->tls);
		return refuse_start(err);
	}
	if (cfg->check_only) {
		config_print(cfg, stdout);
		otelconf_print(&sv->otel, stdout);
		for (const char *p = sv->otel.warnings; *p != '\0';) {
			size_t n = strcspn(p, "\n");

			fprintf(stderr, "microd: warning: %.*s\n", (int)n, p);
			p += n + (p[n] == '\n');
		}
		end_early(sv);
		return cfg->database != NULL && check_statements(cfg, 1) != 0
		           ? 2
		           : 0;
	}
	return -1;
}

/* The start's report of the OTEL_* variables: a warning for each value
 * left at its default, one for http/protobuf, and where spans go. */
static void
otel_log(const struct otelconf *c)
{
	char line[256];
	const char *p = c->warnings;

	while (*p != '\0') {
		size_t n = strcspn(p, "\n");

		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		log_warn("%s", line);
		p += n + (p[n] == '\n');
	}
	if (c->enabled && c->protobuf_asked)
		log_warn("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: microd "
		         "sends OTLP as JSON (http/json) to the same path, "
		         "which a collector's OTLP/HTTP receiver takes too");
	if (c->enabled)
		log_info("traces: OTLP/HTTP JSON to %s, service %s, sampler "
		         "%s",
		         c->url, c->service_name,
		         otelconf_sampler_name(c->sampler));
}

/*
 * Everything before the server: the log, the route table, the sockets the
 * service manager passed, its notify socket, the signal mask (before any
 * thread starts, so they all inherit it: only sigwait() sees these), the
 * log writer, the start's report. 0, or -1 with the reason logged.
 */
static int
prepare(struct supervisor *sv, const struct config *cfg, sigset_t *sigs,
        int *listen_fd, int *tls_listen_fd)
{
	char err[256];

	log_setup(cfg->log_level,
	          cfg->log_format >= 0    ? cfg->log_format
	          : isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT
	                                  : LOG_FORMAT_JSON,
	          stderr_is_journal());
	if (router_join(builtin_routes, builtin_routes_count, app_routes,
	                app_routes_count) != 0) {
		log_error("the route table has more than %d rows", ROUTER_MAX);
		return -1;
	}
	if (metrics_init() != 0) {
		log_error("the route table outgrew the metrics table");
		return -1;
	}
	*listen_fd = activation_listen_fd(err, sizeof(err), tls_listen_fd);
	if (*listen_fd == ACTIVATION_ERROR) {
		log_error("socket activation: %s", err);
		return -1;
	}
	if (*tls_listen_fd >= 0 && cfg->tls_cert == NULL) {
		log_warn("socket activation: a socket named https was passed, "
		         "but there is no --tls-cert: not served");
		close(*tls_listen_fd);
		*tls_listen_fd = ACTIVATION_NONE;
	}
	if (notify_open(&sv->notifier, err, sizeof(err)) != 0) {
		log_error("service manager: %s", err);
		return -1;
	}
	/* Pings at half the interval, as sd_watchdog_enabled(3) advises. */
	sv->ping_every_ms = sv->notifier.watchdog_usec / 2000;
	if (sv->notifier.watchdog_usec > 0 && sv->ping_every_ms < 1)
		sv->ping_every_ms = 1;
	sigemptyset(sigs);
	sigaddset(sigs, SIGTERM);
	sigaddset(sigs, SIGINT);
	sigaddset(sigs, SIGHUP);
	sigaddset(sigs, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, sigs, NULL) != 0) {
		log_error("cannot block signals");
		return -1;
	}
	sigdelset(sigs, SIGPIPE);
	if (log_start() != 0) { /* after the mask: the writer inherits it */
		log_error("cannot start the log writer");
		return -1;
	}
	config_log(cfg, MICROD_VERSION);
	otel_log(&sv->otel);
	middleware_warn(cfg);
	raise_fd_limit(cfg->connection_limit);
	if (router_check_served(cfg->example_routes ? 0 : ROUTE_EXAMPLE,
	                        cfg->body_budget, err, sizeof(err)) != 0) {
		log_error("%s", err);
		notify_close(&sv->notifier);
		log_stop(LOG_FLUSH_MS);
		return -1;
	}
	return 0;
}

/* With --database, its pool: -1 when it cannot be set up (logged), 0 else;
 * a database that is down is no failure (the pool connects later). */
static int
open_database(struct runtime *rt, const struct config *cfg)
{
	const struct db_pool_options opt = {
	    .conninfo = cfg->database,
	    .size = cfg->database_pool,
	    .acquire_timeout_ms = cfg->database_acquire_timeout_ms,
	    .statement_timeout_ms = cfg->database_timeout_ms,
	    .pipeline = cfg->database_pipeline,
	    .statements = app_statements,
	    .n_statements = app_statements_count,
	    .migrations = app_migrations,
	    .n_migrations = app_migrations_count,
	};

	if (cfg->database == NULL)
		return 0;
	rt->db = db_pool_open(&opt);
	return rt->db != NULL ? 0 : -1;
}

/*
 * The service's start hook (before the first request and READY=1), microd's
 * own state, the server, its checks and the watchdog. 0, or -1 with all of
 * it closed again.
 */
static int
start_serving(struct supervisor *sv, const struct config *cfg, int listen_fd,
              int tls_listen_fd)
{
	char why[256];

	sv->app = app_start(cfg);
	if (sv->app == NULL) {
		notify_close(&sv->notifier);
		log_stop(LOG_FLUSH_MS);
		end_early(sv);
		return -1;
	}
	/* The checks exist before the first probe can read them; they run
	 * once there is a server to check. */
	sv->runtime.health_details = cfg->health_details;
	sv->runtime.tls = sv->tls;
	if (sv->tls != NULL)
		tls_install(sv->tls);
	sv->runtime.middleware = sv->middleware;
	middleware_describe(sv->middleware);
	sv->runtime.otel = otel_open(&sv->otel, why, sizeof(why));
	if (why[0] != '\0')
		log_error("traces: the exporter: %s", why);
	sv->runtime.checks =
	    why[0] == '\0' && open_database(&sv->runtime, cfg) == 0
	        ? checks_new(cfg, sv->runtime.db)
	        : NULL;
	sv->srv = sv->runtime.checks != NULL
	              ? server_start(cfg, listen_fd, tls_listen_fd,
	                             &sv->runtime, sv->app)
	              : NULL;
	if (sv->srv != NULL && checks_run(sv->runtime.checks, sv->srv,
	                                  sv->ping_every_ms > 0) != 0) {
		server_stop(sv->srv);
		sv->srv = NULL;
	}
	/* With a watchdog its rounds are the pool check's runs: a watchdog
	 * that cannot run would leave /livez blind, so no start. */
	if (sv->srv != NULL && sv->ping_every_ms > 0) {
		log_info("watchdog: GET /health through each worker thread "
		         "every %lld ms",
		         sv->ping_every_ms);
		sv->watchdog =
		    watchdog_start(sv->srv, &sv->notifier, sv->ping_every_ms,
		                   sv->runtime.checks);
		if (sv->watchdog == NULL) {
			checks_halt(sv->runtime.checks);
			server_stop(sv->srv);
			sv->srv = NULL;
		}
	}
	if (sv->srv != NULL)
		return 0;
	checks_free(sv->runtime.checks);
	db_pool_close(sv->runtime.db);
	otel_close(sv->runtime.otel);
	sv->runtime.otel = NULL;
	app_stop(sv->app);
	middleware_close(sv->middleware);
	tls_close(sv->tls);
	notify_close(&sv->notifier);
	log_stop(LOG_FLUSH_MS);
	return -1;
}

/*
 * After the drain: the watchdog, the checks, the server, then what the
 * probes and the chain used (neither runs once the server has stopped), and
 * the application and the database pool, unless a handler that did not
 * finish still uses them.
 */
static void
stop_serving(struct supervisor *sv)
{
	struct checks *checks = sv->runtime.checks;
	int cut = 0;

	watchdog_stop(sv->watchdog); /* it talks to the pool: stop it first */
	checks_halt(checks);         /* so does the pool check */
	if (server_stop(sv->srv) != 0) {
		log_warn("the application is not torn down: a handler that "
		         "did not finish still uses it");
		cut = 1;
	}
	sv->runtime.checks = NULL;
	sv->runtime.middleware = NULL;
	checks_free(checks);
	middleware_close(sv->middleware);
	if (!cut) {
		app_stop(sv->app);
		db_pool_close(sv->runtime.db);
		sv->runtime.db = NULL;
		/* The spans of every request are queued: send them. */
		otel_close(sv->runtime.otel);
		sv->runtime.otel = NULL;
	} else {
		/* Its connecting thread must not outlive main (libpq and
		 * TLS inside it while exit tears them down); the cut
		 * handlers may still call it. */
		db_pool_abandon(sv->runtime.db);
	}
	tls_close(sv->tls); /* no handshake any more: the daemons stopped */
}

int
main(int argc, char **argv)
{
	struct config cfg;
	/* Static, not for sharing (main alone touches it) but so that what
	 * the handlers a shutdown cut still use (the application, the
	 * database pool) stays reachable while they finish after main. */
	static struct supervisor sv = {.watchdog = NULL};
	sigset_t sigs;
	int sig, status, listen_fd, tls_listen_fd;

	if (argc > 1 && strcmp(argv[1], "probe") == 0)
		return probe_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "migrate") == 0)
		return migrate_main(argc - 1, argv + 1, app_migrations,
		                    app_migrations_count);
	status = open_settings(&sv, &cfg, argc, argv);
	if (status >= 0)
		return status;
	if (prepare(&sv, &cfg, &sigs, &listen_fd, &tls_listen_fd) != 0)
		return end_early(&sv);
	status = ready_database(&cfg);
	if (status != 0) {
		notify_close(&sv.notifier);
		log_stop(LOG_FLUSH_MS);
		end_early(&sv);
		return status;
	}
	if (start_serving(&sv, &cfg, listen_fd, tls_listen_fd) != 0)
		return 1;

	/* MHD_start_daemon returned: the socket listens and the pool runs. */
	state_set(STATE_READY);
	notify_send(&sv.notifier, "READY=1\nSTATUS=serving on %s, %u threads",
	            server_address(sv.srv), cfg.threads);
	for (;;) {
		sig = wait_signal(&sv, &sigs);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGHUP)
			reload(&sv);
	}
	log_info("%s: drain delay %u ms, then at most %u ms for requests in "
	         "flight",
	         signal_name(sig), cfg.drain_delay_ms, cfg.shutdown_timeout_ms);
	shut_down(&sv, &cfg, &sigs);
	stop_serving(&sv);
	state_set(STATE_STOPPED);
	notify_close(&sv.notifier);
	flush_log(&sigs);
	return 0;
}
