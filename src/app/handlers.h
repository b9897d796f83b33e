/* SPDX-License-Identifier: MIT */
/*
 * handlers.h -- the service's handlers: POST /echo (echo.c), the example
 * routes (--example-routes, examples.c): /status/{code}, /delay/{ms},
 * /resolve/{host}, /count, and the example resource on PostgreSQL
 * (notes.c), /notes; the TechEmpower test types (world.c): /json,
 * /plaintext, /db, /queries, /updates
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
handler_fn handle_json;
handler_fn handle_plaintext;
handler_fn handle_db;
handler_fn handle_queries;
handler_fn handle_updates;

/* Most queries one /queries or /updates request makes. */
#define WORLD_QUERIES_MAX 500

/*
 * The number of queries the ?queries= value asks for, as the benchmark
 * clamps it: missing (NULL), empty or not an integer is 1, below 1 is 1,
 * above WORLD_QUERIES_MAX is WORLD_QUERIES_MAX.
 */
unsigned int world_queries(const char *value);

#endif
