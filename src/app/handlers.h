/* SPDX-License-Identifier: MIT */
/*
 * handlers.h -- the service's handlers: POST /echo (echo.c), the example
 * routes (--example-routes, examples.c): /status/{code}, /delay/{ms},
 * /resolve/{host}, /count, and the example resource on PostgreSQL
 * (notes.c), /notes
 */
#ifndef MICROD_APP_HANDLERS_H
#define MICROD_APP_HANDLERS_H

#include "request.h"

/* Longest /delay/{ms}. */
#define EXAMPLES_DELAY_MAX_MS 10000
/* Largest body of POST /notes and PATCH /notes/{id}: a note at its bounds
 * with every character a \uXXXX escape fits. */
#define NOTES_BODY_MAX 65536

handler_fn handle_echo;
handler_fn handle_status;
handler_fn handle_delay;
handler_fn handle_resolve;
handler_fn handle_count;
handler_fn handle_notes_create;
handler_fn handle_notes_list;
handler_fn handle_notes_get;
handler_fn handle_notes_patch;
handler_fn handle_notes_delete;

#endif
