/* SPDX-License-Identifier: MIT */
/* state.c -- the process lifecycle: starting, ready, draining, stopping */
#include "state.h"

#include <stdatomic.h>

#include "log.h"

/* Shared: written by the main thread, read by every pool thread. */
static _Atomic int current = STATE_STARTING;

static const char *const names[] = {"starting", "ready", "draining", "stopping",
                                    "stopped"};

const char *
state_name(enum state s)
{
	return names[s];
}

enum state
state_get(void)
{
	return (enum state)atomic_load(&current);
}

void
state_set(enum state next)
{
	enum state prev = (enum state)atomic_exchange(&current, (int)next);

	if (prev != next)
		log_info("state: %s -> %s", names[prev], names[next]);
}
