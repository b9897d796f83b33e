/* SPDX-License-Identifier: MIT */
/*
 * otel.c -- OpenTelemetry traces: the sampler, a SERVER span per request
 * and a CLIENT span per database statement, handed to the exporter
 */
#include "otel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "export.h"
#include "reqid.h"
#include "request.h"
#include "runtime.h"

/* Set up by otel_open before the server starts; read-only after. */
struct otel {
	struct otelconf conf;
	struct export *export;
};

struct otel *
otel_open(const struct otelconf *c, char *why, size_t len)
{
	struct otel *o;

	why[0] = '\0';
	if (!c->enabled)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (o == NULL) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	o->conf = *c;
	o->export = export_start(c, why, len);
	if (o->export == NULL) {
		free(o);
		return NULL;
	}
	return o;
}

void
otel_close(struct otel *o)
{
	if (o == NULL)
		return;
	export_stop(o->export);
	free(o);
}

static int
is_sampled(const char *flags)
{
	return flags != NULL && flags[0] != '\0' && flags[1] != '\0' &&
	       strchr("13579bdf", flags[1]) != NULL;
}

int
otel_sample(enum otelconf_sampler s, double ratio, const char *parent_flags,
            const char *trace_id)
{
	uint64_t low = 0;

	if (parent_flags != NULL && (s == OTELCONF_PARENTBASED_ALWAYS_ON ||
	                             s == OTELCONF_PARENTBASED_ALWAYS_OFF ||
	                             s == OTELCONF_PARENTBASED_TRACEIDRATIO))
		return is_sampled(parent_flags);
	switch (s) {
	case OTELCONF_PARENTBASED_ALWAYS_ON:
	case OTELCONF_ALWAYS_ON:
		return 1;
	case OTELCONF_PARENTBASED_ALWAYS_OFF:
	case OTELCONF_ALWAYS_OFF:
		return 0;
	case OTELCONF_PARENTBASED_TRACEIDRATIO:
	case OTELCONF_TRACEIDRATIO:
		break;
	}
	if (ratio >= 1.0)
		return 1;
	if (ratio <= 0.0)
		return 0;
	for (size_t i = 16; i < 32 && trace_id[i] != '\0'; i++) {
		char c = trace_id[i];

		low = low << 4 |
		      (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	/* 2^64 * ratio, below 2^64 as ratio < 1 */
	return low < (uint64_t)(ratio * 18446744073709551616.0);
}

/* n random hex digits and a NUL, not all '0' (n <= 32). */
static void
random_id(char *out, size_t n)
{
	char r[33];

	for (;;) {
		reqid_new(r);
		for (size_t i = 0; i < n; i++)
			if (r[i] != '0') {
				memcpy(out, r, n);
				out[n] = '\0';
				return;
			}
	}
}

int
otel_server_begin(const struct otel *o, struct trace *t)
{
	int parent, yes;

	if (o == NULL)
		return 0;
	parent = t->trace_id[0] != '\0';
	if (!parent) {
		random_id(t->trace_id, 32);
		memcpy(t->flags, "00", 3);
	}
	yes = otel_sample(o->conf.sampler, o->conf.ratio,
	                  parent ? t->flags : NULL, t->trace_id);
	random_id(t->self_id, 16);
	memcpy(t->self_flags, yes ? "01" : "00", 3);
	if (!parent)
		memcpy(t->flags, t->self_flags, 3);
	return yes;
}

/* Wall-clock Unix nanoseconds of a now_ns() reading. */
static long long
unix_ns(long long mono_ns, long long wall_now, long long mono_now)
{
	return wall_now - (mono_now - mono_ns);
}

/* One attribute to be copied into a span. */
struct attr_in {
	const char *key, *str; /* str NULL: num */
	long long num;
};

/*
 * A span of trace t named name, its strings copied into its one
 * allocation; NULL without memory (the span is then left out).
 */
static struct span *
span_new(const char *trace_id, const char *span_id, const char *parent_id,
         int kind, const char *name, const struct attr_in *a, size_t n)
{
	size_t need = strlen(name) + 1, at;
	struct span *s;

	for (size_t i = 0; i < n; i++)
		if (a[i].str != NULL)
			need += strlen(a[i].str) + 1;
	s = malloc(sizeof(*s) + need);
	if (s == NULL)
		return NULL;
	memset(s, 0, sizeof(*s));
	snprintf(s->trace_id, sizeof(s->trace_id), "%s", trace_id);
	snprintf(s->span_id, sizeof(s->span_id), "%s", span_id);
	snprintf(s->parent_id, sizeof(s->parent_id), "%s", parent_id);
	s->kind = kind;
	at = strlen(name) + 1;
	memcpy(s->text, name, at);
	s->name = s->text;
	for (size_t i = 0; i < n && s->n_attrs < SPAN_ATTRS; i++) {
		struct span_attr *d = &s->attrs[s->n_attrs++];

		d->key = a[i].key;
		d->num = a[i].num;
		if (a[i].str != NULL) {
			size_t l = strlen(a[i].str) + 1;

			memcpy(s->text + at, a[i].str, l);
			d->str = s->text + at;
			at += l;
		}
	}
	return s;
}

/*
 * Whether method is one HTTP defines (RFC 9110, PATCH): the semantic
 * conventions name any other _OTHER, so that clients cannot make span
 * names of their own.
 */
static int
otel_method_known(const char *method)
{
	static const char *const known[] = {"GET",     "HEAD",   "POST",
	                                    "PUT",     "DELETE", "CONNECT",
	                                    "OPTIONS", "TRACE",  "PATCH"};

	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
		if (strcmp(method, known[k]) == 0)
			return 1;
	return 0;
}

void
otel_server_end(struct otel *o, const struct trace *t,
                const struct otel_server_info *i)
{
	int known;
	char name[160];
	struct attr_in a[SPAN_ATTRS];
	size_t n = 0;
	struct span *s;
	long long wall = wall_ns(), mono = now_ns();

	if (o == NULL)
		return;
	known = otel_method_known(i->method);
	snprintf(name, sizeof(name), "%s%s%s", known ? i->method : "HTTP",
	         i->route != NULL ? " " : "", i->route != NULL ? i->route : "");
	a[n++] = (struct attr_in){"http.request.method",
	                          known ? i->method : "_OTHER", 0};
	if (!known)
		a[n++] = (struct attr_in){"http.request.method_original",
		                          i->method, 0};
	a[n++] = (struct attr_in){"url.path", i->path, 0};
	if (i->route != NULL)
		a[n++] = (struct attr_in){"http.route", i->route, 0};
	a[n++] = (struct attr_in){"http.response.status_code", NULL,
	                          (long long)i->status};
	if (i->peer != NULL && i->peer[0] != '\0')
		a[n++] = (struct attr_in){"network.peer.address", i->peer, 0};
	if (i->user_agent != NULL)
		a[n++] =
		    (struct attr_in){"user_agent.original", i->user_agent, 0};
	s = span_new(t->trace_id, t->self_id, t->span_id, SPAN_KIND_SERVER,
	             name, a, n);
	if (s == NULL)
		return;
	s->error = i->status >= 500;
	s->start_unix_ns = unix_ns(i->start_ns, wall, mono);
	s->end_unix_ns = unix_ns(i->end_ns, wall, mono);
	export_push(o->export, s); /* s is the exporter's */
}

void
otel_client_span(const struct request *req, const char *statement,
                 long long start_ns, long long end_ns, const char *sqlstate)
{
	struct otel *o;
	struct attr_in a[3];
	char id[17];
	size_t n = 0;
	struct span *s;
	long long wall, mono;

	if (req == NULL || req->runtime == NULL || req->trace == NULL)
		return;
	o = req->runtime->otel;
	if (o == NULL || req->trace->self_id[0] == '\0' ||
	    !is_sampled(req->trace->self_flags))
		return;
	wall = wall_ns();
	mono = now_ns();
	a[n++] = (struct attr_in){"db.system.name", "postgresql", 0};
	a[n++] = (struct attr_in){"db.operation.name", statement, 0};
	if (sqlstate != NULL)
		a[n++] =
		    (struct attr_in){"db.response.status_code", sqlstate, 0};
	random_id(id, 16);
	s = span_new(req->trace->trace_id, id, req->trace->self_id,
	             SPAN_KIND_CLIENT, statement, a, n);
	if (s == NULL)
		return;
	s->error = sqlstate != NULL;
	s->start_unix_ns = unix_ns(start_ns, wall, mono);
	s->end_unix_ns = unix_ns(end_ns, wall, mono);
	export_push(o->export, s); /* s is the exporter's */
}
