/* SPDX-License-Identifier: MIT */
/*
 * handlers.h -- the service's handlers: POST /echo (echo.c), and the example
 * routes (--example-routes, examples.c): /status/{code}, /delay/{ms},
 * /resolve/{host} and a small note store, /notes/{name}
 */
#ifndef MICROD_APP_HANDLERS_H
#define MICROD_APP_HANDLERS_H

#include "request.h"

/* Longest note name, in bytes. */
#define NOTES_NAME_MAX 64
/* Most notes the store holds. */
#define NOTES_MAX 64
/* Longest /delay/{ms}. */
#define EXAMPLES_DELAY_MAX_MS 10000

handler_fn handle_echo;
handler_fn handle_status;
handler_fn handle_delay;
handler_fn handle_resolve;
handler_fn handle_note_put;
handler_fn handle_note_get;

/* The note store, the example's resource: opened by app_start, drained and
 * closed by the life cycle. */
struct notes *notes_open(void);
void notes_drain(struct notes *notes);
void notes_close(struct notes *notes); /* NULL-safe */

#endif
