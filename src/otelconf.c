/* SPDX-License-Identifier: MIT */
/* otelconf.c -- the OTEL_* environment variables, read into one struct */
#include "otelconf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "number.h"

static const char *const sampler_names[] = {
    [OTELCONF_PARENTBASED_ALWAYS_ON] = "parentbased_always_on",
    [OTELCONF_PARENTBASED_ALWAYS_OFF] = "parentbased_always_off",
    [OTELCONF_PARENTBASED_TRACEIDRATIO] = "parentbased_traceidratio",
    [OTELCONF_ALWAYS_ON] = "always_on",
    [OTELCONF_ALWAYS_OFF] = "always_off",
    [OTELCONF_TRACEIDRATIO] = "traceidratio",
};

const char *
otelconf_sampler_name(enum otelconf_sampler s)
{
	return sampler_names[s];
}

/* One more line of warnings (cut when there is no room). */
static void
warn(struct otelconf *c, const char *name, const char *value, const char *used)
{
	size_t n = strlen(c->warnings);

	snprintf(c->warnings + n, sizeof(c->warnings) - n,
	         "%s=%.64s is not valid: %s used\n", name, value, used);
}

/* A set, non-empty variable, or NULL. */
static const char *
value_of(const char *(*get)(const char *), const char *name)
{
	const char *v = get(name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* A count or milliseconds in [min, max], else def with a warning. */
static unsigned int
uint_var(struct otelconf *c, const char *(*get)(const char *), const char *name,
         unsigned int min, unsigned int max, unsigned int def)
{
	const char *v = value_of(get, name);
	uintmax_t n;
	char used[32];

	if (v == NULL)
		return def;
	if (number_parse(v, max, &n) == 0 && n >= min)
		return (unsigned int)n;
	snprintf(used, sizeof(used), "%u", def);
	warn(c, name, v, used);
	return def;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* s[0..n) trimmed of spaces and tabs and percent-decoded into out; -1 when
 * it does not fit or a '%' is not followed by two hex digits. */
static int
decode(const char *s, size_t n, char *out, size_t len)
{
	size_t k = 0;

	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '%') {
			if (i + 2 >= n || hexval(s[i + 1]) < 0 ||
			    hexval(s[i + 2]) < 0)
				return -1;
			ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		if (k + 1 >= len)
			return -1;
		out[k++] = ch;
	}
	out[k] = '\0';
	return 0;
}

/*
 * "k1=v1,k2=v2" (W3C Baggage's form, values percent-encoded) into out. A
 * list with a member that breaks the form is dropped whole, with a warning,
 * as the specification says of OTEL_RESOURCE_ATTRIBUTES.
 */
static size_t
pairs_var(struct otelconf *c, const char *(*get)(const char *),
          const char *name, struct otelconf_pair *out)
{
	const char *v = value_of(get, name), *p;
	size_t n = 0;

	if (v == NULL)
		return 0;
	for (p = v; *p != '\0';) {
		const char *end = strchr(p, ','), *eq;

		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL || n == OTELCONF_PAIRS ||
		    decode(p, (size_t)(eq - p), out[n].key,
		           sizeof(out[n].key)) != 0 ||
		    out[n].key[0] == '\0' ||
		    decode(eq + 1, (size_t)(end - eq - 1), out[n].value,
		           sizeof(out[n].value)) != 0) {
			warn(c, name, v, "none of it");
			return 0;
		}
		n++;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

/* scheme://host[:port][/path] into c; 0 or -1. */
static int
split_url(struct otelconf *c, const char *url)
{
	const char *h, *end, *colon;
	size_t hl;
	uintmax_t port;

	if (strncmp(url, "http://", 7) == 0) {
		h = url + 7;
		c->port = 80;
	} else if (strncmp(url, "https://", 8) == 0) {
		h = url + 8;
		c->tls = 1;
		c->port = 443;
	} else {
		return -1;
	}
	end = h + strcspn(h, "/?#");
	if (*h == '[') { /* an IPv6 address */
		const char *close = memchr(h, ']', (size_t)(end - h));

		if (close == NULL)
			return -1;
		hl = (size_t)(close - h - 1);
		memcpy(c->host, h + 1, hl < sizeof(c->host) ? hl : 0);
		colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
		if (close + 1 < end && colon == NULL)
			return -1;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon != NULL ? colon : end) - h);
		if (hl < sizeof(c->host))
			memcpy(c->host, h, hl);
	}
	if (hl == 0 || hl >= sizeof(c->host))
		return -1;
	c->host[hl] = '\0';
	if (colon != NULL) {
		char digits[8];
		size_t dl = (size_t)(end - colon - 1);

		if (dl == 0 || dl >= sizeof(digits))
			return -1;
		memcpy(digits, colon + 1, dl);
		digits[dl] = '\0';
		if (number_parse(digits, 65535, &port) != 0 || port == 0)
			return -1;
		c->port = (unsigned int)port;
	}
	if (*end == '#')
		return -1;
	if (snprintf(c->path, sizeof(c->path), "%s%s", *end == '/' ? "" : "/",
	             end) >= (int)sizeof(c->path))
		return -1;
	return 0;
}

/* The endpoint: the traces one as it is, else the base one's /v1/traces. */
static int
endpoint(struct otelconf *c, const char *(*get)(const char *), char *err,
         size_t errlen)
{
	const char *name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
	const char *v = value_of(get, name);
	int n;

	if (v != NULL) {
		n = snprintf(c->url, sizeof(c->url), "%s", v);
	} else {
		name = "OTEL_EXPORTER_OTLP_ENDPOINT";
		v = value_of(get, name);
		if (v == NULL)
			return 0;
		if (strpbrk(v, "?#") != NULL) { /* /v1/traces goes after it */
			snprintf(err, errlen,
			         "%s=%.128s: a base URL has no query or "
			         "fragment (/v1/traces is added to it)",
			         name, v);
			return -1;
		}
		n = snprintf(c->url, sizeof(c->url), "%s%sv1/traces", v,
		             v[strlen(v) - 1] == '/' ? "" : "/");
	}
	if (n < 0 || (size_t)n >= sizeof(c->url) || split_url(c, c->url) != 0) {
		snprintf(err, errlen,
		         "%s=%.128s: not an http:// or https:// URL "
		         "(host, optional port and path)",
		         name, v);
		return -1;
	}
	c->enabled = 1;
	return 0;
}

static void
sampler(struct otelconf *c, const char *(*get)(const char *))
{
	const char *v = value_of(get, "OTEL_TRACES_SAMPLER");
	const char *arg = value_of(get, "OTEL_TRACES_SAMPLER_ARG");
	size_t i;
	char *end;
	double r;

	c->sampler = OTELCONF_PARENTBASED_ALWAYS_ON;
	c->ratio = 1.0;
	if (v != NULL) {
		for (i = 0; i < sizeof(sampler_names) / sizeof(*sampler_names);
		     i++)
			if (strcasecmp(v, sampler_names[i]) == 0)
				break;
		if (i < sizeof(sampler_names) / sizeof(*sampler_names))
			c->sampler = (enum otelconf_sampler)i;
		else
			warn(c, "OTEL_TRACES_SAMPLER", v,
			     "parentbased_always_on");
	}
	if (arg == NULL || (c->sampler != OTELCONF_TRACEIDRATIO &&
	                    c->sampler != OTELCONF_PARENTBASED_TRACEIDRATIO))
		return;
	r = strtod(arg, &end);
	if (*end == '\0' && end != arg && r >= 0.0 && r <= 1.0)
		c->ratio = r;
	else
		warn(c, "OTEL_TRACES_SAMPLER_ARG", arg, "1.0");
}

static int
is_true(const char *v)
{
	return v != NULL && strcasecmp(v, "true") == 0;
}

int
otelconf_parse(struct otelconf *c, const char *(*get)(const char *name),
               char *err, size_t errlen)
{
	const char *v;

	memset(c, 0, sizeof(*c));
	err[0] = '\0';
	/* Off: nothing else is read, so settings made for every service (a
	 * grpc protocol, say) cannot stop microd from starting. */
	v = value_of(get, "OTEL_SDK_DISABLED");
	if (is_true(v))
		return 0;
	if (v != NULL && strcasecmp(v, "false") != 0)
		warn(c, "OTEL_SDK_DISABLED", v, "false");
	if (value_of(get, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == NULL &&
	    value_of(get, "OTEL_EXPORTER_OTLP_ENDPOINT") == NULL)
		return 0;
	v = value_of(get, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
	if (v == NULL)
		v = value_of(get, "OTEL_EXPORTER_OTLP_PROTOCOL");
	if (v != NULL && strcasecmp(v, "http/protobuf") == 0) {
		c->protobuf_asked = 1;
	} else if (v != NULL && strcasecmp(v, "http/json") != 0) {
		snprintf(err, errlen,
		         "OTEL_EXPORTER_OTLP_PROTOCOL=%.64s: microd exports "
		         "OTLP over HTTP as JSON only: set http/json (or "
		         "unset it)%s",
		         v,
		         strcasecmp(v, "grpc") == 0
		             ? "; a collector's OTLP/HTTP receiver (port "
		               "4318) takes it"
		             : "");
		return -1;
	}
	if (endpoint(c, get, err, errlen) != 0)
		return -1;
	v = value_of(get, "OTEL_SERVICE_NAME");
	c->n_resource =
	    pairs_var(c, get, "OTEL_RESOURCE_ATTRIBUTES", c->resource);
	snprintf(c->service_name, sizeof(c->service_name), "%s", "microd");
	for (size_t i = 0; i < c->n_resource; i++)
		if (strcmp(c->resource[i].key, "service.name") == 0)
			snprintf(c->service_name, sizeof(c->service_name), "%s",
			         c->resource[i].value);
	if (v != NULL)
		snprintf(c->service_name, sizeof(c->service_name), "%s", v);
	c->n_headers =
	    pairs_var(c, get,
	              value_of(get, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") != NULL
	                  ? "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	                  : "OTEL_EXPORTER_OTLP_HEADERS",
	              c->headers);
	sampler(c, get);
	c->schedule_delay_ms =
	    uint_var(c, get, "OTEL_BSP_SCHEDULE_DELAY", 1, 3600000, 5000);
	c->export_timeout_ms =
	    uint_var(c, get, "OTEL_BSP_EXPORT_TIMEOUT", 1, 3600000, 30000);
	c->max_queue =
	    uint_var(c, get, "OTEL_BSP_MAX_QUEUE_SIZE", 1, 1000000, 2048);
	c->max_batch =
	    uint_var(c, get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1000000, 512);
	if (c->max_batch > c->max_queue) {
		char used[32];

		snprintf(used, sizeof(used), "%u (the queue's size)",
		         c->max_queue);
		snprintf(err, errlen, "%u", c->max_batch);
		warn(c, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", err, used);
		err[0] = '\0';
		c->max_batch = c->max_queue;
	}
	v = value_of(get, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
	c->otlp_timeout_ms =
	    uint_var(c, get,
	             v != NULL ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
	                       : "OTEL_EXPORTER_OTLP_TIMEOUT",
	             1, 3600000, 10000);
	return 0;
}

void
otelconf_print(const struct otelconf *c, FILE *out)
{
	if (!c->enabled) {
		fprintf(out, "traces: off\n");
		return;
	}
	fprintf(out, "traces to %s as OTLP/HTTP JSON%s: service %s, sampler %s",
	        c->url, c->protobuf_asked ? " (http/protobuf asked)" : "",
	        c->service_name, otelconf_sampler_name(c->sampler));
	if (c->sampler == OTELCONF_TRACEIDRATIO ||
	    c->sampler == OTELCONF_PARENTBASED_TRACEIDRATIO)
		fprintf(out, " %g", c->ratio);
	fprintf(out,
	        "\ntraces: batches of %u every %u ms, queue %u, export "
	        "timeout %u ms, request timeout %u ms, %zu resource "
	        "attributes, %zu headers\n",
	        c->max_batch, c->schedule_delay_ms, c->max_queue,
	        c->export_timeout_ms, c->otlp_timeout_ms, c->n_resource,
	        c->n_headers);
}
