/* SPDX-License-Identifier: MIT */
/* oneshot.c -- one request from literals through router and handler */
#include "oneshot.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dispatch.h"
#include "policy.h"
#include "reply.h"
#include "reqid.h"
#include "router.h"

/* A request's fields, parsed from the literals; all in one block. */
struct shot {
	const struct oneshot *in;
	char *query; /* the decoded query: name NUL value NUL ..., owned */
	size_t query_len;
	char id[REQID_MAX + 1];
};

/* The value of header line h when its name is name, else NULL. */
static const char *
header_value(const char *h, const char *name)
{
	size_t n = strlen(name);

	if (strncasecmp(h, name, n) != 0 || h[n] != ':')
		return NULL;
	h += n + 1;
	while (*h == ' ' || *h == '\t')
		h++;
	return h;
}

/* Calls fn for each query argument named name; a NULL name: stop at one. */
static const char *
query_walk(const struct shot *s, const char *name,
           void (*fn)(void *, const char *), void *arg)
{
	for (size_t at = 0; at < s->query_len;) {
		const char *k = s->query + at, *v = k + strlen(k) + 1;
		const char *value = *v == '\1' ? NULL : v; /* "?flag" */

		at = (size_t)(v - s->query) + strlen(v) + 1;
		if (strcasecmp(k, name) != 0)
			continue;
		if (fn == NULL)
			return value != NULL ? value : "";
		fn(arg, value);
	}
	return NULL;
}

static const char *
lookup(void *ctx, enum request_field field, const char *name)
{
	const struct shot *s = ctx;
	const char *const *h = s->in->headers;

	if (field == REQUEST_PEER)
		return "127.0.0.1";
	if (field == REQUEST_QUERY)
		return query_walk(s, name, NULL, NULL);
	for (; h != NULL && *h != NULL; h++) {
		const char *v = header_value(*h, name);

		if (v != NULL)
			return v;
	}
	return NULL;
}

static void
each(void *ctx, enum request_field field, const char *name,
     void (*fn)(void *, const char *), void *arg)
{
	const struct shot *s = ctx;
	const char *const *h = s->in->headers;

	if (field == REQUEST_QUERY) {
		query_walk(s, name, fn, arg);
		return;
	}
	for (; field == REQUEST_HEADER && h != NULL && *h != NULL; h++) {
		const char *v = header_value(*h, name);

		if (v != NULL)
			fn(arg, v);
	}
}

/*
 * Decodes n bytes of a query part as libmicrohttpd 0.9.75 does: '+' is a
 * space, "%XX" a byte, and a '%' without two hex digits stays as it is.
 * Returns the length written to out (room for n).
 */
static size_t
query_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] == '+') {
			out[o++] = ' ';
		} else if (in[i] == '%' && i + 2 < n &&
		           policy_percent_decode(in + i, 3, out + o, 1) == 1) {
			o++; /* the one decoder, one escape at a time */
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	return o;
}

/*
 * Splits the query at '&' and '=' and decodes each part (query_decode) into
 * name NUL value NUL pairs; a name without '=' gets the value "\1" (none).
 */
static int
query_parse(struct shot *s, const char *q)
{
	size_t n = strlen(q), used = 0;

	s->query = malloc(2 * n + 4);
	if (s->query == NULL)
		return -1;
	while (*q != '\0') {
		size_t part = strcspn(q, "&"), kn = strcspn(q, "=&");

		if (part == 0) {
			q++;
			continue;
		}
		used += query_decode(q, kn, s->query + used);
		s->query[used++] = '\0';
		if (kn == part)
			s->query[used++] = '\1';
		else
			used += query_decode(q + kn + 1, part - kn - 1,
			                     s->query + used);
		s->query[used++] = '\0';
		q += part;
	}
	s->query_len = used;
	return 0;
}

int
oneshot_run(const struct oneshot *in, struct reply *rep)
{
	struct shot s = {.in = in};
	struct request req = {
	    .method = in->method, .lookup = lookup, .each = each, .ctx = &s};
	struct route_result res;
	size_t tn = strlen(in->target), blen = in->body_len;
	char *path = malloc(tn + 2), *raw = malloc(tn + 1);
	char *params = malloc(tn + REQUEST_PARAMS_MAX + 1), *copy = NULL;
	struct policy_verdict v;
	int ret = -1;

	memset(rep, 0, sizeof(*rep));
	if (in->body != NULL && blen == 0)
		blen = strlen(in->body);
	if (path == NULL || raw == NULL || params == NULL)
		goto out;
	reqid_new(s.id);
	req.id = s.id;
	req.app = in->app;
	req.runtime = in->runtime;
	req.path = path;
	v = policy_decode_target(in->target, path, tn + 2);
	if (v.status != 0) {
		reply_error(rep, v.status, "%s", v.detail);
		ret = 0;
		goto out;
	}
	memcpy(raw, policy_target_path(in->target), tn + 1);
	raw[policy_target_path_end(raw) - raw] = '\0';
	if (query_parse(&s, in->target + strcspn(in->target, "?") +
	                        (strchr(in->target, '?') != NULL)) != 0)
		goto out;
	ret = 0;
	if (router_find(in->method, raw, in->hide, params,
	                tn + REQUEST_PARAMS_MAX + 1, &res) != ROUTE_FOUND) {
		router_reply_unmatched(&res, &req, rep);
		goto out;
	}
	req.params = &res.params;
	if (blen > (res.route->max_body > 0 ? res.route->max_body
	            : in->max_body > 0      ? in->max_body
	                                    : (size_t)1 << 20)) {
		reply_error(rep, 413,
		            "the request body is larger than the limit");
		goto out;
	}
	if (res.route->flags & ROUTE_JSON_BODY) {
		if (!dispatch_is_json(
		        lookup(&s, REQUEST_HEADER, "Content-Type"))) {
			reply_error(rep, 415, DISPATCH_NOT_JSON);
			goto out;
		}
		if (dispatch_json(in->body, blen, &req.body, rep) != 0)
			goto out;
	}
	if (res.route->flags & ROUTE_RAW_BODY) {
		copy = malloc(blen + 1); /* a raw body has a NUL after it */
		if (copy == NULL) {
			ret = -1;
			goto out;
		}
		if (blen > 0)
			memcpy(copy, in->body, blen);
		copy[blen] = '\0';
		req.raw = copy;
		req.raw_len = blen;
	}
	if (strcmp(in->method, "HEAD") != 0)
		req.method = res.route->method;
	dispatch_run(res.route, &req, rep);
	json_decref(req.body);
out:
	free(copy);
	free(s.query);
	free(params);
	free(raw);
	free(path);
	return ret;
}
