/* SPDX-License-Identifier: MIT */
/*
 * server.c -- the daemons: bind or take a passed socket, HTTPS beside, the
 * accept policy, start, drain, stop
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "router.h"
#include "tls.h"

/*
 * A fall of this many connections from their peak asks for malloc_trim, as a
 * large body freed does (TRIM_AFTER, exchange.c).
 */
#define TRIM_CONNECTIONS 256

/* How long the stop lets resumed handler-pool requests get their 503. */
#define STOP_ANSWER_MS 500

/*
 * 0.9.75 deadlocks a worker that gets a connection from MHD_add_connection
 * while it is at its connection limit (in new_connection_process_ the limit
 * branch never unlocks cleanup_connection_mutex), and MHD_add_connection's
 * check for room races with the worker's own accepts. So microd enforces
 * --connection-limit itself, over all workers (on_accept), and gives the
 * library a limit no worker can reach: every client on one worker, plus the
 * connections shut down to make room and not yet closed, plus one client
 * per other worker accepted in the same instant, plus the watchdog's one
 * check per worker, plus its ticker (ticker.c), plus a spare.
 */
#define LIBRARY_LIMIT(limit, workers)                                          \
	((intptr_t)(workers) *                                                 \
	 ((intptr_t)(limit) + WAITING_CLOSING_MAX + (intptr_t)(workers) + 3))

/*
 * libmicrohttpd's accept policy: --connection-limit over all workers (see
 * LIBRARY_LIMIT). Clients are counted once on_connection sees them, so
 * workers accepting in the same instant may pass the limit by one each,
 * for that instant. At the limit, the client connection that has waited
 * longest for a request head (idle, or sending one slowly) is shut down to
 * make room, as nginx reuses its idle connections: slow clients cannot
 * keep a probe out. Only when every client is in a request is the new one
 * refused. The watchdog's checks count against it too, but close no
 * client: refused, they are taken for busy, not wedged.
 */
static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct server *srv = cls;

	(void)len;
	if (atomic_load(&srv->clients) < srv->connection_limit ||
	    (!selfcall_is_own_peer(addr) && waiting_evict(srv->heads)))
		return MHD_YES;
	atomic_fetch_add(&srv->refused, 1);
	metrics_connection_refused();
	return MHD_NO;
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
              enum MHD_ConnectionNotificationCode code)
{
	struct server *srv = cls;
	struct conn_state *cs;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		int client = !is_own_connection(conn);
		const union MHD_ConnectionInfo *sock = MHD_get_connection_info(
		    conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int ticker =
		    !client && sock != NULL && ticker_is(srv, sock->connect_fd);
		unsigned int now, peak;

		cs = calloc(1, sizeof(*cs));
		if (ticker) { /* not a connection anyone opened */
			if (cs != NULL)
				cs->ticker = 1;
			*socket_ctx = cs; /* freed below */
			return;
		}
		now = metrics_connection_opened();
		peak = atomic_load(&srv->peak_conns);
		while (now > peak && !atomic_compare_exchange_weak(
		                         &srv->peak_conns, &peak, now))
			;
		/* Without it the connection just never counts as waiting. */
		if (cs != NULL) {
			atomic_fetch_add(&srv->waiting, 1);
			cs->client = client;
			if (client) {
				atomic_fetch_add(&srv->clients, 1);
				if (sock != NULL) {
					waiting_add(srv->heads, &cs->waiter,
					            sock->connect_fd);
					ticker_shadow(sock->connect_fd);
				} else
					cs->client = 0; /* cannot happen */
			}
		}
		*socket_ctx = cs; /* freed below, when the connection closes */
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		cs = *socket_ctx;
		if (cs != NULL && cs->ticker) {
			free(cs);
			*socket_ctx = NULL;
			return;
		}
		metrics_connection_closed();
		if (cs != NULL && !cs->began)
			atomic_fetch_sub(&srv->waiting, 1);
		if (cs != NULL && cs->client) {
			/* Before libmicrohttpd closes the descriptor. */
			waiting_remove(srv->heads, &cs->waiter);
			atomic_fetch_sub(&srv->clients, 1);
		}
		free(cs);
		*socket_ctx = NULL;
	}
}

void
server_trim(struct server *srv)
{
	unsigned int now = metrics_connections();
	int burst = atomic_load(&srv->peak_conns) >= now + TRIM_CONNECTIONS;

	if (!atomic_exchange(&srv->trim_wanted, 0) && !burst)
		return;
	atomic_store(&srv->peak_conns, now);
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

unsigned long long
server_refused(const struct server *srv)
{
	return atomic_load(&srv->refused);
}

/*
 * libmicrohttpd's own messages, at warn. 0.9.75 cannot tell that a socket
 * handed in with MHD_add_connection (the watchdog's socketpair) is not TCP: it
 * tries TCP_NODELAY/TCP_CORK on it and reports their harmless failure on every
 * such request. Those socket-tuning reports go to debug, the rest stay warn.
 */
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	int tuning, saved = errno; /* MHD sets errno, then logs */

	(void)cls;
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		return;
	msg[strcspn(msg, "\n")] = '\0';
	tuning = strncmp(msg, "Setting TCP_", 12) == 0 ||
	         strncmp(msg, "Failed to push the data", 23) == 0;
	log_peer(tuning ? LOG_DEBUG : LOG_WARN, "%s", msg);
	errno = saved;
}

/* The address as logged, and the port, from the socket itself. */
static void
describe_socket(int fd, char *address, size_t alen, unsigned int *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		snprintf(address, alen, "fd %d", fd);
		return;
	}
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		*port = ntohs(sin->sin_port);
		snprintf(address, alen, "%s:%u", host, *port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		*port = ntohs(sin6->sin6_port);
		snprintf(address, alen, "[%s]:%u", host, *port);
	} else if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		size_t n = len > offsetof(struct sockaddr_un, sun_path)
		               ? len - offsetof(struct sockaddr_un, sun_path)
		               : 0;

		/* An abstract name starts with NUL; show it as '@'. */
		if (n > 0 && sun->sun_path[0] == '\0')
			snprintf(address, alen, "unix:@%.*s", (int)(n - 1),
			         sun->sun_path + 1);
		else
			snprintf(address, alen, "unix:%.*s",
			         (int)strnlen(sun->sun_path, n), sun->sun_path);
	} else {
		snprintf(address, alen, "fd %d", fd);
	}
}

/* Fills ss from the configured address; adds the IPv6 flags it needs. */
static int
bind_address(const struct config *cfg, unsigned int port,
             struct sockaddr_storage *ss, unsigned int *flags)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, cfg->bind, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (inet_pton(AF_INET6, cfg->bind, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		/* "::" serves IPv4 too; a specific address only itself. */
		*flags |= IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
		              ? MHD_USE_DUAL_STACK
		              : MHD_USE_IPv6;
		return 0;
	}
	return -1;
}

/* Whether a route the server serves may block: then it needs the pool. */
static int
needs_pool(unsigned int hide)
{
	for (size_t i = 0; i < router_count(); i++) {
		const struct route *rt = router_at(i);

		if ((rt->flags & ROUTE_BLOCKING) && !(rt->flags & hide))
			return 1;
	}
	return 0;
}

/*
 * One daemon on the access handlers: on listen_fd when one was passed, else
 * bound to --bind and port; HTTPS with tls, its certificate from
 * tls_retrieve. Logs why on failure. Fills address and *port_out.
 */
static struct MHD_Daemon *
start_daemon(struct server *srv, const struct config *cfg, unsigned int flags,
             const struct MHD_OptionItem *limits, int listen_fd,
             unsigned int port, int tls, char *address, size_t alen,
             unsigned int *port_out)
{
	struct sockaddr_storage ss;
	struct MHD_OptionItem where[4] = {{MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL},
	                                  {MHD_OPTION_END, 0, NULL}};
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;

	if (listen_fd >= 0) {
		/* The socket's family decides; the bind address is unused. */
		where[0] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET,
		                                   (intptr_t)listen_fd, NULL};
	} else if (bind_address(cfg, port, &ss, &flags) == 0) {
		where[0] =
		    (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
	} else {
		log_error("%s: bad bind address %s", __func__, cfg->bind);
		return NULL;
	}
	if (tls) {
		flags |= MHD_USE_TLS;
		where[1] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, (void *)tls_retrieve};
		where[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES,
		                                   0, srv->tls_priorities};
	}
	d = MHD_start_daemon(flags, (uint16_t)port, on_accept, srv, on_request,
	                     srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	                     MHD_OPTION_URI_LOG_CALLBACK, on_target, srv,
	                     MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
	                     MHD_OPTION_ARRAY, where, MHD_OPTION_ARRAY, limits,
	                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
	                     MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
	                     MHD_OPTION_END);
	if (d == NULL) {
		if (listen_fd >= 0)
			log_error("%s: cannot serve the socket passed as "
			          "descriptor %d",
			          __func__, listen_fd);
		else
			log_error("%s: cannot listen on %s port %u%s", __func__,
			          cfg->bind, port,
			          tls ? " for HTTPS (see the lines above)"
			              : "");
		return NULL;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	describe_socket(info != NULL ? (int)info->listen_fd : listen_fd,
	                address, alen, port_out);
	return d;
}

struct server *
server_start(const struct config *cfg, int listen_fd, int tls_listen_fd,
             struct runtime *runtime, struct app *app)
{
	struct server *srv;
	/*
	 * epoll by default: an idle connection costs it nothing per request
	 * served, where poll walks every connection on every wake-up. Its
	 * 0.9.75 stall (a worker that finds 128 requests ready at once waits
	 * for its whole timeout) is what the tickers cure (ticker.c).
	 */
	unsigned int base = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	                    MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	int epoll = cfg->event_loop == EVENT_LOOP_EPOLL;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	srv->quiesced_fd = MHD_INVALID_SOCKET;
	srv->tls_quiesced_fd = MHD_INVALID_SOCKET;
	srv->max_body = cfg->max_body;
	srv->body_budget = cfg->body_budget;
	atomic_init(&srv->body_bytes, 0);
	atomic_init(&srv->trim_wanted, 0);
	atomic_init(&srv->peak_conns, 0);
	srv->workers = cfg->threads > 1 ? cfg->threads : 1;
	srv->connection_limit = cfg->connection_limit;
	for (size_t i = 0; i < CHECK_MAX; i++) {
		srv->probes[i].fd = -1;
		atomic_init(&srv->ticks[i].fd, -1);
		srv->ticks[i].shadow = -1;
		srv->ticks[i].peer = -1;
		atomic_init(&srv->ticks[i].state, TICK_AWAKE);
		atomic_init(&srv->ticks[i].woken_ns, 0);
	}
	atomic_init(&srv->ticks_stop, 0);
	srv->tick_ctl = -1;
	atomic_init(&srv->clients, 0);
	srv->log_probes = cfg->log_probes;
	srv->passed = listen_fd >= 0;
	atomic_init(&srv->draining, 0);
	atomic_init(&srv->waiting, 0);
	atomic_init(&srv->probe_log_next_ns, 0);
	atomic_init(&srv->probe_log_skipped, 0);
	atomic_init(&srv->refused, 0);
	srv->app = app;
	srv->runtime = runtime;
	srv->hide = cfg->example_routes ? 0 : ROUTE_EXAMPLE;
	srv->heads = waiting_start((long long)cfg->header_timeout_ms * 1000000);
	if (srv->heads == NULL) {
		log_error("%s: cannot start the header deadline's sweep",
		          __func__);
		goto fail;
	}
	if (needs_pool(srv->hide)) {
		srv->pool =
		    pool_start(cfg->handler_threads, cfg->handler_queue);
		srv->gone = gone_start(cfg->handler_threads);
		if (srv->pool == NULL || srv->gone == NULL)
			goto fail;
		log_info("handler pool: %u threads, a queue of %u, for the "
		         "routes that may block",
		         cfg->handler_threads, cfg->handler_queue);
	}

	/* Limits and strictness, shared by both ways of listening. */
	struct MHD_OptionItem limits[] = {
	    {MHD_OPTION_CONNECTION_LIMIT,
	     LIBRARY_LIMIT(cfg->connection_limit, srv->workers), NULL},
	    {MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_ip_limit, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	     (intptr_t)cfg->connection_memory, NULL},
	    /*
	     * The default strictness: level 1 adds only the Host rule (whose
	     * refusal 0.9.75 sends with its status head twice) and the refusal
	     * of a space in the target, and src/policy.c applies both itself,
	     * with problem details; the rules level -1 would add are there too.
	     */
	    {MHD_OPTION_STRICT_FOR_CLIENT, 0, NULL},
	    /* Last, and left out for one thread: 0.9.75 warns on every
	     * start that a pool of one is no pool. */
	    {srv->workers > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
	     srv->workers, NULL},
	    {MHD_OPTION_END, 0, NULL},
	};

	srv->daemon = start_daemon(
	    srv, cfg, base | (epoll ? MHD_USE_EPOLL : MHD_USE_POLL), limits,
	    listen_fd, cfg->port, 0, srv->address, sizeof(srv->address),
	    &srv->port);
	if (srv->daemon == NULL)
		goto fail;
	if (epoll && ticker_start(srv) != 0)
		goto fail;
	log_info("listening on %s%s", srv->address,
	         srv->passed ? " (socket passed by the service manager)" : "");
	if (cfg->tls_cert != NULL) {
		srv->tls_priorities = strdup(cfg->tls_priorities);
		if (srv->tls_priorities == NULL) {
			log_error("%s: out of memory", __func__);
			goto fail;
		}
		srv->tls_passed = tls_listen_fd >= 0;
		/*
		 * HTTPS polls: a ticker is a plain socketpair, and a TLS
		 * daemon would wait for its handshake, so epoll there would
		 * keep the stall (microd(8), BUGS).
		 */
		srv->tls_daemon = start_daemon(
		    srv, cfg, base | MHD_USE_POLL, limits, tls_listen_fd,
		    cfg->tls_port, 1, srv->tls_address,
		    sizeof(srv->tls_address), &srv->tls_port);
		if (srv->tls_daemon == NULL)
			goto fail;
		log_info("listening on %s for HTTPS (%s)%s", srv->tls_address,
		         srv->tls_priorities,
		         srv->tls_passed
		             ? " (socket passed by the service manager)"
		             : "");
	}
	return srv;
fail:
	if (srv->daemon != NULL) {
		ticker_stop(srv);
		MHD_stop_daemon(srv->daemon);
		ticker_close(srv);
	}
	free(srv->tls_priorities);
	if (srv->pool != NULL) {
		pool_close(srv->pool, NULL);
		pool_stop(srv->pool);
	}
	gone_stop(srv->gone);
	waiting_stop(srv->heads);
	free(srv);
	return NULL;
}

const char *
server_address(const struct server *srv)
{
	return srv->address;
}

unsigned int
server_port(const struct server *srv)
{
	return srv->port;
}

int
server_quiesce(struct server *srv)
{
	atomic_store(&srv->draining, 1);
	if (srv->tls_daemon != NULL) {
		/* As the HTTP socket below: a passed one stays listening. */
		srv->tls_quiesced_fd = MHD_quiesce_daemon(srv->tls_daemon);
		if (srv->tls_quiesced_fd == MHD_INVALID_SOCKET)
			log_error("%s: cannot stop accepting HTTPS connections",
			          __func__);
		else if (!srv->tls_passed &&
		         shutdown(srv->tls_quiesced_fd, SHUT_RDWR) != 0)
			log_warn("%s: shutdown of the HTTPS listening socket: "
			         "%s",
			         __func__, strerror(errno));
	}
	srv->quiesced_fd = MHD_quiesce_daemon(srv->daemon);
	if (srv->quiesced_fd == MHD_INVALID_SOCKET) {
		log_error("%s: cannot stop accepting connections", __func__);
		return -1;
	}
	/*
	 * A passed socket belongs to the service manager, which keeps it open
	 * across a restart: connections arriving now queue in its backlog for
	 * the next instance, so it must stay listening.
	 */
	if (srv->passed)
		return 0;
	/*
	 * The pool no longer polls the socket, but the kernel still completes
	 * handshakes into its backlog, where clients would wait for nothing.
	 * shutdown() takes it out of the listening state so they are refused
	 * at once and retry elsewhere; the descriptor itself stays open until
	 * the daemon is stopped, so no worker can ever see its number reused.
	 */
	if (shutdown(srv->quiesced_fd, SHUT_RDWR) != 0)
		log_warn("%s: shutdown of the listening socket: %s", __func__,
		         strerror(errno));
	return 0;
}

unsigned int
server_in_flight(const struct server *srv)
{
	(void)srv;
	return metrics_in_flight();
}

unsigned int
server_connections(const struct server *srv)
{
	(void)srv;
	return metrics_connections();
}

unsigned int
server_waiting(const struct server *srv)
{
	return atomic_load(&srv->waiting);
}

const char *
server_library_version(void)
{
	return MHD_get_version();
}

int
server_stop(struct server *srv)
{
	unsigned int running = 0;
	unsigned long long skipped;

	/*
	 * 0.9.75 aborts in MHD_stop_daemon while a connection is suspended:
	 * every request on the handler pool is resumed first, to a 503 if it
	 * was still queued (it never runs) or its handler still runs (the
	 * handler goes on; its reply is dropped).
	 */
	if (srv->pool != NULL) {
		pool_close(srv->pool, job_cancel);
		running = pool_abandon(srv->pool, job_abandon);
		if (running > 0)
			log_warn("stopping with %u blocking handlers still "
			         "running: their requests are cut",
			         running);
	}
	for (size_t i = 0; i < CHECK_MAX; i++)
		if (srv->probes[i].fd >= 0)
			close(srv->probes[i].fd);
	/* The resumed ones get their 503 from their worker, if it is quick. */
	if (srv->pool != NULL) {
		long long until = now_ms() + STOP_ANSWER_MS;

		while (metrics_in_flight() > 0 && now_ms() < until) {
			struct timespec tick = {0, 5 * 1000000L};

			nanosleep(&tick, NULL);
		}
	}
	ticker_stop(srv); /* 0.9.75 aborts on a suspended connection */
	MHD_stop_daemon(srv->daemon);
	ticker_close(srv);
	if (srv->tls_daemon != NULL)
		MHD_stop_daemon(srv->tls_daemon);
	if (srv->tls_quiesced_fd != MHD_INVALID_SOCKET)
		close(srv->tls_quiesced_fd);
	free(srv->tls_priorities);
	skipped = atomic_load(&srv->probe_log_skipped);
	if (skipped > 0) /* the count no later access-log line will carry */
		log_warn("%llu failed probe answers since the last one "
		         "logged were not access-logged",
		         skipped);
	if (srv->quiesced_fd != MHD_INVALID_SOCKET)
		close(srv->quiesced_fd);
	pool_stop(srv->pool);     /* NULL-safe; leaves running handlers be */
	gone_stop(srv->gone);     /* NULL-safe; theirs last until they end */
	waiting_stop(srv->heads); /* every connection is gone */
	free(srv);
	return running > 0 ? -1 : 0;
}
