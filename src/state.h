/* SPDX-License-Identifier: MIT */
/* state.h -- the process lifecycle, shared by main and the handlers */
#ifndef MICROD_STATE_H
#define MICROD_STATE_H

enum state {
	STATE_STARTING,
	STATE_READY,
	STATE_DRAINING,
	STATE_STOPPING,
	STATE_STOPPED
};

enum state state_get(void);
/* Moves to next and logs the transition once. */
void state_set(enum state next);
const char *state_name(enum state s);

#endif
