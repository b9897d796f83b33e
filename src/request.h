/* SPDX-License-Identifier: MIT */
/* request.h -- what a handler sees and what it returns; no libmicrohttpd */
#ifndef MICROD_REQUEST_H
#define MICROD_REQUEST_H

#include <jansson.h>

enum request_field { REQUEST_HEADER, REQUEST_QUERY };

struct request {
	const char *method;
	const char *path;
	json_t *body; /* parsed JSON, for routes that take one; borrowed */
	/* Looks up a header or query argument; NULL when absent. */
	const char *(*lookup)(void *ctx, enum request_field field,
	                      const char *name);
	void *ctx;
};

struct reply {
	unsigned int status;
	json_t *body;             /* owned by the reply */
	int problem;              /* body is RFC 9457 problem details */
	char allow[32];           /* Allow header for a 405, else empty */
	unsigned int retry_after; /* seconds for Retry-After; 0: none */
	/* A non-JSON body (the metrics text) instead of body; owned. */
	char *text;
	size_t text_len;
	const char *text_type;
};

typedef void handler_fn(const struct request *, struct reply *);

static inline const char *
request_header(const struct request *req, const char *name)
{
	return req->lookup != NULL ? req->lookup(req->ctx, REQUEST_HEADER, name)
	                           : NULL;
}

static inline const char *
request_query(const struct request *req, const char *name)
{
	return req->lookup != NULL ? req->lookup(req->ctx, REQUEST_QUERY, name)
	                           : NULL;
}

#endif
