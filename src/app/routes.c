/* SPDX-License-Identifier: MIT */
/*
 * routes.c -- the service's route rows: method, path template, handler,
 * flags, body limit. microd's own rows (probes, /version, /metrics) are in
 * src/builtin.c; the two tables are joined at start.
 */
#include "app.h"
#include "handlers.h"
#include "router.h"

/* The notes resource and the World table's routes talk to the database:
 * on the handler pool only. */
#define NOTES (ROUTE_EXAMPLE | ROUTE_BLOCKING)

const struct route app_routes[] = {
    {"POST", "/echo", handle_echo, ROUTE_JSON_BODY, 0},
    /* --example-routes: see src/app/examples.c and microd(8). */
    {"GET", "/status/{code}", handle_status, ROUTE_EXAMPLE, 0},
    {"GET", "/delay/{ms}", handle_delay, ROUTE_EXAMPLE | ROUTE_BLOCKING, 0},
    {"GET", "/resolve/{host}", handle_resolve, ROUTE_EXAMPLE | ROUTE_BLOCKING,
     0},
    {"POST", "/count", handle_count, ROUTE_EXAMPLE | ROUTE_RAW_BODY, 4096},
    /* --example-routes and --database: see src/app/notes.c. */
    {"POST", "/notes", handle_notes_create, NOTES | ROUTE_JSON_BODY,
     NOTES_BODY_MAX},
    {"GET", "/notes", handle_notes_list, NOTES, 0},
    {"GET", "/notes/{id}", handle_notes_get, NOTES, 0},
    {"PATCH", "/notes/{id}", handle_notes_patch, NOTES | ROUTE_JSON_BODY,
     NOTES_BODY_MAX},
    {"DELETE", "/notes/{id}", handle_notes_delete, NOTES, 0},
    /* --example-routes: the TechEmpower test types, see src/app/world.c;
     * the World table's also need --database. */
    {"GET", "/json", handle_json, ROUTE_EXAMPLE, 0},
    {"GET", "/plaintext", handle_plaintext, ROUTE_EXAMPLE, 0},
    {"GET", "/db", handle_db, NOTES, 0},
    {"GET", "/queries", handle_queries, NOTES, 0},
    {"GET", "/updates", handle_updates, NOTES, 0},
};

const size_t app_routes_count = sizeof(app_routes) / sizeof(app_routes[0]);
