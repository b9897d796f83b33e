/* SPDX-License-Identifier: MIT */
/*
 * router.c -- the matcher: map method + raw path to a row of the joined
 * route table and its path parameters
 */
#include "router.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "reply.h"

/*
 * The table served: microd's own rows, then the service's, joined once by
 * router_join at start, before any thread reads it; read-only after.
 */
static struct route routes[ROUTER_MAX];
static size_t n_routes;

/* Longest literal segment a template may have: decoded on the stack. */
#define LITERAL_MAX 128

/* Segments past this many still match, but no longer rank. */
#define RANKED_SEGMENTS 64

static int
method_matches(const char *route_method, const char *method)
{
	if (strcmp(route_method, method) == 0)
		return 1;
	return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

static int
is_param(const char *t, size_t n)
{
	return n >= 2 && t[0] == '{' && t[n - 1] == '}';
}

/* Whether the raw segment r (rn bytes) decodes to exactly t (tn bytes). */
static int
literal_matches(const char *t, size_t tn, const char *r, size_t rn)
{
	char dec[LITERAL_MAX];
	long got;

	if (memchr(r, '%', rn) == NULL)
		return rn == tn && memcmp(t, r, tn) == 0;
	if (tn > sizeof(dec))
		return 0;
	got = policy_percent_decode(r, rn, dec, sizeof(dec));
	return got == (long)tn && memcmp(t, dec, tn) == 0;
}

/*
 * Whether template t matches raw path r (both from their first '/'; escaped:
 * r holds a '%'); *rank gets a bit per literal segment, the first segment
 * highest; *segments, how many were compared. Walks both byte by byte:
 * this runs for every row on every request.
 */
static int
template_matches(const char *t, const char *r, int escaped, uint64_t *rank,
                 unsigned int *segments)
{
	*rank = 0;
	for (unsigned int i = 0;; i++) {
		*segments = i + 1;
		t++; /* past the '/' */
		r++;
		if (*t == '{') { /* a whole {name} segment (router_check) */
			if (*r == '/' || *r == '\0')
				return 0;
			while (*t != '/' && *t != '\0')
				t++;
			while (*r != '/' && *r != '\0')
				r++;
		} else {
			const char *t0 = t, *r0 = r;

			while (*t == *r && *t != '/' && *t != '\0') {
				t++;
				r++;
			}
			if ((*t != '/' && *t != '\0') ||
			    (*r != '/' && *r != '\0')) {
				/* Different bytes: equal only if the rest of
				 * the raw segment holds an escape (a literal
				 * holds none, so none came before). */
				const char *p = r;
				size_t tn, rn;

				if (!escaped)
					return 0; /* the usual case: no '%' */
				while (*p != '/' && *p != '\0' && *p != '%')
					p++;
				if (*p != '%')
					return 0;
				tn = strcspn(t0, "/");
				rn = strcspn(r0, "/");
				if (!literal_matches(t0, tn, r0, rn))
					return 0;
				t = t0 + tn;
				r = r0 + rn;
			}
			if (i < RANKED_SEGMENTS)
				*rank |= (uint64_t)1
				         << (RANKED_SEGMENTS - 1 - i);
		}
		if (*t == '\0' || *r == '\0')
			return *t == *r;
	}
}

/* Appends ", name" (or just name, first) when it fits and is not there. */
static void
allow_append(char *buf, size_t len, const char *name)
{
	size_t used = strlen(buf), n = strlen(name);

	for (const char *p = buf; *p != '\0'; p += strcspn(p, ",")) {
		p += strspn(p, ", ");
		if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return;
	}
	if (used + n + 3 > len)
		return;
	snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "", name);
}

/* Decodes each {name} segment of rt's template from raw into buf. */
static enum route_match
take_params(const struct route *rt, const char *raw, char *buf, size_t len,
            struct route_result *out)
{
	const char *t = rt->path, *r = raw;
	size_t used = 0;

	out->params.n = 0;
	while (*t != '\0') {
		size_t tn, rn;
		long got;

		t++;
		r++;
		tn = strcspn(t, "/");
		rn = strcspn(r, "/");
		if (is_param(t, tn) && out->params.n < REQUEST_PARAMS_MAX) {
			struct request_param *p =
			    &out->params.at[out->params.n++];

			p->name = t + 1;
			p->name_len = tn - 2;
			got = used < len ? policy_percent_decode(
			                       r, rn, buf + used, len - used)
			                 : -1;
			if (got < 0 || (size_t)got >= len - used) {
				out->detail = got < 0 ? "malformed "
				                        "percent-encoding"
				                      : "too long to decode";
				return ROUTE_BAD_PARAM;
			}
			for (long i = 0; i < got; i++) {
				unsigned char c = (unsigned char)buf[used + i];

				if (c == '/')
					out->detail = "an encoded '/' (%2F) "
					              "is not allowed in it";
				else if (c < 0x20 || c == 0x7f)
					out->detail = "a control byte is not "
					              "allowed in it";
			}
			if (out->detail != NULL)
				return ROUTE_BAD_PARAM;
			buf[used + (size_t)got] = '\0';
			p->value = buf + used;
			used += (size_t)got + 1;
		}
		t += tn;
		r += rn;
	}
	return ROUTE_FOUND;
}

enum route_match
router_match(const struct route *table, size_t n, const char *method,
             const char *raw, unsigned int hide, char *buf, size_t len,
             struct route_result *out)
{
	const struct route *best = NULL, *any = NULL;
	uint64_t best_rank = 0, any_rank = 0;
	int escaped;

	out->params.n = 0;
	out->allow[0] = '\0';
	out->detail = NULL;
	if (raw[0] == '\0')
		raw = "/";   /* an absolute-form target with no path */
	if (raw[0] != '/') { /* "*", or not a path at all */
		out->route = NULL;
		return out->match = ROUTE_NOT_FOUND;
	}
	escaped = strchr(raw, '%') != NULL;
	for (size_t i = 0; i < n; i++) {
		const struct route *rt = &table[i];
		unsigned int segs;
		uint64_t rank;

		if ((rt->flags & hide) != 0 ||
		    !template_matches(rt->path, raw, escaped, &rank, &segs))
			continue;
		if (any == NULL || rank > any_rank) {
			any = rt;
			any_rank = rank;
		}
		if (!method_matches(rt->method, method))
			continue;
		/* On a tie a row for the very method beats GET for HEAD. */
		if (best == NULL || rank > best_rank ||
		    (rank == best_rank && strcmp(rt->method, method) == 0 &&
		     strcmp(best->method, method) != 0)) {
			best = rt;
			best_rank = rank;
		}
		/* Every segment literal, for the very method: no row can
		 * beat it (router_check allows no second such row). */
		if (best == rt && segs < RANKED_SEGMENTS &&
		    rank == ~(~(uint64_t)0 >> segs) &&
		    strcmp(rt->method, method) == 0)
			break;
	}
	out->route = best != NULL ? best : any;
	if (best == NULL && any == NULL)
		return out->match = ROUTE_NOT_FOUND;
	if (best == NULL) {
		/* Only a 405 needs it: every method of every matching row. */
		for (size_t i = 0; i < n; i++) {
			const struct route *rt = &table[i];
			unsigned int segs;
			uint64_t rank;

			if ((rt->flags & hide) != 0 ||
			    !template_matches(rt->path, raw, escaped, &rank,
			                      &segs))
				continue;
			allow_append(out->allow, sizeof(out->allow),
			             rt->method);
			if (strcmp(rt->method, "GET") == 0)
				allow_append(out->allow, sizeof(out->allow),
				             "HEAD");
		}
		return out->match = ROUTE_BAD_METHOD;
	}
	out->match = take_params(best, raw, buf, len, out);
	return out->match;
}

enum route_match
router_find(const char *method, const char *raw, unsigned int hide, char *buf,
            size_t len, struct route_result *out)
{
	return router_match(routes, n_routes, method, raw, hide, buf, len, out);
}

static int
is_name(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

/* Whether two templates match the same paths: equal but for names. */
static int
same_shape(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0') {
		size_t an, bn;

		a++;
		b++;
		an = strcspn(a, "/");
		bn = strcspn(b, "/");
		if (is_param(a, an) != is_param(b, bn) ||
		    (!is_param(a, an) && (an != bn || memcmp(a, b, an) != 0)))
			return 0;
		a += an;
		b += bn;
	}
	return *a == *b;
}

/* NULL, or what is wrong with the template. */
static const char *
template_fault(const char *t)
{
	const char *names[REQUEST_PARAMS_MAX];
	size_t lens[REQUEST_PARAMS_MAX], np = 0;

	if (t == NULL || t[0] != '/')
		return "the path must start with '/'";
	while (*t != '\0') {
		size_t tn;

		t++;
		tn = strcspn(t, "/");
		if (is_param(t, tn)) {
			if (!is_name(t + 1, tn - 2))
				return "a parameter's name must be a letter "
				       "or '_', then letters, digits or '_'";
			if (np == REQUEST_PARAMS_MAX)
				return "more parameters than "
				       "REQUEST_PARAMS_MAX";
			for (size_t i = 0; i < np; i++)
				if (lens[i] == tn - 2 &&
				    memcmp(names[i], t + 1, tn - 2) == 0)
					return "two parameters have one name";
			names[np] = t + 1;
			lens[np++] = tn - 2;
		} else {
			if (memchr(t, '{', tn) != NULL ||
			    memchr(t, '}', tn) != NULL)
				return "a '{' or '}' that is not a whole "
				       "{name} segment";
			if (memchr(t, '%', tn) != NULL)
				return "a '%' in a literal segment (write it "
				       "decoded)";
			if (tn > LITERAL_MAX)
				return "a literal segment longer than 128 "
				       "bytes";
		}
		t += tn;
	}
	return NULL;
}

const char *
router_check(const struct route *table, size_t n, unsigned int hide, char *msg,
             size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct route *rt = &table[i];
		const char *why = template_fault(rt->path);

		if (why == NULL &&
		    (rt->method == NULL || rt->method[0] == '\0'))
			why = "no method";
		if (why == NULL && rt->handler == NULL)
			why = "no handler";
		if (why == NULL && (rt->flags & ROUTE_JSON_BODY) &&
		    (rt->flags & ROUTE_RAW_BODY))
			why = "both ROUTE_JSON_BODY and ROUTE_RAW_BODY";
		for (size_t j = 0; why == NULL && j < i; j++) {
			if ((table[j].flags & hide) || (rt->flags & hide) ||
			    template_fault(table[j].path) != NULL ||
			    strcmp(table[j].method, rt->method) != 0)
				continue;
			if (same_shape(table[j].path, rt->path))
				why = "another row has the same method and "
				      "template";
		}
		if (why != NULL) {
			snprintf(msg, len, "route %zu (%s %s): %s", i,
			         rt->method != NULL ? rt->method : "?",
			         rt->path != NULL ? rt->path : "?", why);
			return msg;
		}
	}
	return NULL;
}

int
router_join(const struct route *own, size_t n_own, const struct route *app,
            size_t n_app)
{
	if (n_own > ROUTER_MAX || n_app > ROUTER_MAX - n_own)
		return -1;
	memcpy(routes, own, n_own * sizeof(*own));
	memcpy(routes + n_own, app, n_app * sizeof(*app));
	n_routes = n_own + n_app;
	return 0;
}

size_t
router_count(void)
{
	return n_routes;
}

const struct route *
router_at(size_t i)
{
	return i < n_routes ? &routes[i] : NULL;
}

size_t
router_index(const struct route *rt)
{
	return (size_t)(rt - routes);
}

void
router_reply_unmatched(const struct route_result *res,
                       const struct request *req, struct reply *rep)
{
	if (res->match == ROUTE_BAD_METHOD) {
		reply_error(rep, 405, "%s is not allowed on %s", req->method,
		            req->path);
		snprintf(rep->allow, sizeof(rep->allow), "%s", res->allow);
		return;
	}
	if (res->match == ROUTE_BAD_PARAM) {
		const struct request_param *p =
		    &res->params.at[res->params.n - 1];

		reply_error(rep, 400, "path parameter %.*s: %s",
		            (int)p->name_len, p->name, res->detail);
		return;
	}
	reply_error(rep, 404, "no route for %s %s", req->method, req->path);
}

int
router_check_served(unsigned int hide, size_t body_budget, char *msg,
                    size_t len)
{
	char why[200];

	if (router_check(routes, n_routes, hide, why, sizeof(why)) != NULL) {
		snprintf(msg, len, "the route table is wrong: %s", why);
		return -1;
	}
	for (size_t i = 0; i < n_routes; i++) {
		const struct route *rt = &routes[i];

		if (rt->max_body > body_budget && !(rt->flags & hide)) {
			snprintf(
			    msg, len,
			    "%s %s takes bodies up to %zu bytes, more than "
			    "the body budget of %zu bytes: raise "
			    "--body-budget",
			    rt->method, rt->path, rt->max_body, body_budget);
			return -1;
		}
	}
	return 0;
}
