/* SPDX-License-Identifier: MIT */
/* server.h -- the libmicrohttpd thread pool that serves the routes */
#ifndef MICROD_SERVER_H
#define MICROD_SERVER_H

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
 * Sends GET /health through the worker pool, over a socketpair handed to the
 * daemon (no network needed), and waits up to timeout_ms for the answer.
 * 0 when it was 200, else -1. For the watchdog: a wedged pool fails it.
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

/* libmicrohttpd's version, as the library loaded at run time reports it. */
const char *server_library_version(void);

/* Stops the pool (cutting whatever is still open) and frees srv. */
void server_stop(struct server *srv);

#endif
