/* SPDX-License-Identifier: MIT */
/* watchdog.h -- the service manager's watchdog, fed from its own thread */
#ifndef MICROD_WATCHDOG_H
#define MICROD_WATCHDOG_H

#include "notify.h"
#include "server/server.h"

struct checks;
struct watchdog;

/*
 * Every every_ms, checks each worker thread of srv's pool and sends
 * WATCHDOG=1 through n only when every one answered (or the pool was full:
 * busy is not wedged). Runs on a thread of its own, so neither the drain nor
 * signal handling ever waits for a check. Each round is also a run of the
 * "pool" health check of checks (NULL: none), which then runs no thread of
 * its own. Start it after signals are masked; stop it before server_stop().
 * NULL on failure (logged).
 */
struct watchdog *watchdog_start(struct server *srv, const struct notifier *n,
                                long long every_ms, struct checks *checks);
void watchdog_stop(struct watchdog *wd);

#endif
