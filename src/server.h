/* SPDX-License-Identifier: MIT */
/* server.h -- the libmicrohttpd thread pool that serves the routes */
#ifndef MICROD_SERVER_H
#define MICROD_SERVER_H

#include "config.h"

struct server;

/* Binds and starts the pool; logs the address and real port. NULL on error. */
struct server *server_start(const struct config *cfg);

unsigned int server_port(const struct server *srv);

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
