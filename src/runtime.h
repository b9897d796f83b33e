/* SPDX-License-Identifier: MIT */
/*
 * runtime.h -- microd's own state that its built-in routes and the engine
 * read: the health checks, the HTTPS certificate, the before-handler chain,
 * the database pool
 */
#ifndef MICROD_RUNTIME_H
#define MICROD_RUNTIME_H

struct checks;
struct db_pool;
struct middleware;
struct otel;
struct tls;

/*
 * Set up by main before the server starts; handed to every handler as
 * req->runtime. Only main changes it, and only while no request runs (the
 * checks are cleared once the server has stopped).
 */
struct runtime {
	struct checks *checks; /* what the probes read; NULL: none */
	int health_details;    /* --health-details */
	struct tls *tls;       /* the HTTPS certificate; NULL: none */
	/* The before-handler chain's state (rate limit, tokens); NULL: the
	 * chain is not run. */
	struct middleware *middleware;
	/* With --database, the PostgreSQL pool (src/db/db.h), for blocking
	 * handlers only (request_db); NULL: none. */
	struct db_pool *db;
	/* With an OTEL_EXPORTER_OTLP_*ENDPOINT, the span exporter
	 * (src/otel.h); NULL: traces are off. */
	struct otel *otel;
};

#endif
