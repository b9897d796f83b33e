/* SPDX-License-Identifier: MIT */
/* server.h -- the libmicrohttpd thread pool that serves the routes */
#ifndef MICROD_SERVER_H
#define MICROD_SERVER_H

#include <sys/types.h>

#include "config.h"

struct server;

/*
 * Starts the pool on listen_fd when it is >= 0 (a listening socket passed by
 * the service manager), else binds cfg's address and port. Logs the address
 * and real port. NULL on error.
 */
struct server *server_start(const struct config *cfg, int listen_fd);

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

/*
 * GET /health through the pool with server_exchange(): 0 when it answered
 * 200 within timeout_ms, else -1. For the watchdog: a wedged pool fails it.
 */
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

/* libmicrohttpd's version, as the library loaded at run time reports it. */
const char *server_library_version(void);

/* Stops the pool (cutting whatever is still open) and frees srv. */
void server_stop(struct server *srv);

#endif
