/* SPDX-License-Identifier: MIT */
/* server.h -- the libmicrohttpd thread pool that serves the routes */
#ifndef MICROD_SERVER_H
#define MICROD_SERVER_H

#include <sys/types.h>

#include "config.h"

struct server;
struct app;
struct runtime;

/*
 * Starts the pool on listen_fd when it is >= 0 (a listening socket passed by
 * the service manager), else binds cfg's address and port, and the handler
 * pool when a route served may block. Logs the address and real port.
 * runtime (microd's own state) and app (the service's context) are handed to
 * every handler. NULL on error.
 */
struct server *server_start(const struct config *cfg, int listen_fd,
                            int tls_listen_fd, struct runtime *runtime,
                            struct app *app);

unsigned int server_port(const struct server *srv);

/* The address served, as logged: "0.0.0.0:8080", "[::1]:80", "unix:/x". */
const char *server_address(const struct server *srv);

/*
 * Hands one end of a socketpair to the pool as an accepted connection (no
 * network needed), writes req down the other end, half-closes it, and reads
 * the answer until the pool closes the connection or timeout_ms passes.
 * Returns the bytes read into out (NUL-terminated, cut at outlen - 1), or -1
 * on a timeout or error. The HTTP fuzz target sends arbitrary bytes this way.
 */
ssize_t server_exchange(struct server *srv, const void *req, size_t len,
                        char *out, size_t outlen, int timeout_ms);

/* What one check of the pool found. */
struct pool_check {
	unsigned int workers;  /* the worker threads asked */
	unsigned int answered; /* those that answered 200 in time */
	unsigned int full;     /* refused: every worker at its limit */
};

/*
 * For the watchdog: a GET /health through each worker thread of the pool at
 * once (libmicrohttpd hands a socket added with MHD_add_connection to the
 * worker its number picks, so each gets a socketpair numbered for it). A
 * connection refused because every worker is at its connection limit counts
 * in full: the pool is busy, not wedged. Waits up to timeout_ms, or until
 * cancel_fd (-1: none) is readable. Returns 0 with *out filled, or -1 when
 * cancelled.
 */
int server_check_pool(struct server *srv, int timeout_ms, int cancel_fd,
                      struct pool_check *out);

/* server_check_pool() without cancelling: 0 when every worker answered (or
 * the pool was full), else -1. */
int server_self_check(struct server *srv, int timeout_ms);

/*
 * Starts the drain: stops accepting new connections, and from now on every
 * response carries Connection: close. Returns 0, or -1 when the daemon could
 * not be quiesced (it then keeps accepting until server_stop).
 */
int server_quiesce(struct server *srv);

/* Requests whose handling has begun and whose response is not yet sent. */
unsigned int server_in_flight(const struct server *srv);

/* Open client connections, idle keep-alives included. */
unsigned int server_connections(const struct server *srv);

/*
 * Open connections on which no request has begun yet: just accepted, their
 * client about to send its first request (or sending it slowly).
 */
unsigned int server_waiting(const struct server *srv);

/*
 * Hands memory glibc keeps after large bodies or a burst of connections back
 * to the system (malloc_trim), when there was such; cheap otherwise. For the
 * main thread, about once a second.
 */
void server_trim(struct server *srv);

/* Client connections refused because their worker was at its share of the
 * connection limit, since start. */
unsigned long long server_refused(const struct server *srv);

/* libmicrohttpd's version, as the library loaded at run time reports it. */
const char *server_library_version(void);

/*
 * Stops the pool (cutting whatever is still open) and frees srv. -1 when a
 * blocking handler was still running: it goes on in its thread, so the app
 * it uses must be left alone until the process exits; else 0.
 */
int server_stop(struct server *srv);

#endif
