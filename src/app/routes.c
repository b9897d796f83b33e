/* SPDX-License-Identifier: MIT */
/*
 * routes.c -- the service's route rows: method, path template, handler,
 * flags, body limit. microd's own rows (probes, /version, /metrics) are in
 * src/builtin.c; the two tables are joined at start.
 */
#include "app.h"
#include "handlers.h"
#include "router.h"

const struct route app_routes[] = {
    {"POST", "/echo", handle_echo, ROUTE_JSON_BODY, 0},
    /* --example-routes: see src/app/examples.c and microd(8). */
    {"GET", "/status/{code}", handle_status, ROUTE_EXAMPLE, 0},
    {"GET", "/delay/{ms}", handle_delay, ROUTE_EXAMPLE | ROUTE_BLOCKING, 0},
    {"GET", "/resolve/{host}", handle_resolve, ROUTE_EXAMPLE | ROUTE_BLOCKING,
     0},
    {"PUT", "/notes/{name}", handle_note_put,
     ROUTE_EXAMPLE | ROUTE_RAW_BODY | ROUTE_BLOCKING, 4096},
    {"GET", "/notes/{name}", handle_note_get, ROUTE_EXAMPLE, 0},
};

const size_t app_routes_count = sizeof(app_routes) / sizeof(app_routes[0]);
