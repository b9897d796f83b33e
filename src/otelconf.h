/* SPDX-License-Identifier: MIT */
/* otelconf.h -- the OTEL_* environment variables, read into one struct */
#ifndef MICROD_OTELCONF_H
#define MICROD_OTELCONF_H

#include <stddef.h>
#include <stdio.h>

/* Most OTEL_RESOURCE_ATTRIBUTES pairs, and OTEL_EXPORTER_OTLP_HEADERS. */
#define OTELCONF_PAIRS 16

enum otelconf_sampler {
	OTELCONF_PARENTBASED_ALWAYS_ON, /* the default */
	OTELCONF_PARENTBASED_ALWAYS_OFF,
	OTELCONF_PARENTBASED_TRACEIDRATIO,
	OTELCONF_ALWAYS_ON,
	OTELCONF_ALWAYS_OFF,
	OTELCONF_TRACEIDRATIO,
};

struct otelconf_pair {
	char key[64], value[256]; /* percent-decoded */
};

struct otelconf {
	int enabled; /* an endpoint is set and OTEL_SDK_DISABLED is not true */
	/* Where spans go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, else
	 * OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces"; split. */
	char url[512];
	char host[256];
	unsigned int port;
	int tls;        /* https:// */
	char path[256]; /* from the '/' on, the query with it */
	char service_name[128];
	size_t n_resource, n_headers;
	struct otelconf_pair resource[OTELCONF_PAIRS];
	struct otelconf_pair headers[OTELCONF_PAIRS];
	enum otelconf_sampler sampler;
	double ratio;                   /* OTEL_TRACES_SAMPLER_ARG: 0 to 1 */
	unsigned int schedule_delay_ms; /* OTEL_BSP_SCHEDULE_DELAY: 5000 */
	unsigned int max_queue;         /* OTEL_BSP_MAX_QUEUE_SIZE: 2048 */
	unsigned int max_batch; /* OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 512 */
	unsigned int export_timeout_ms; /* OTEL_BSP_EXPORT_TIMEOUT: 30000 */
	unsigned int otlp_timeout_ms;   /* OTEL_EXPORTER_OTLP_TIMEOUT: 10000 */
	int protobuf_asked; /* http/protobuf was asked for: JSON goes all the
	                     * same, with one warning */
	/* Values that were not valid and so left at their default, each as
	 * the specification says: one line each, for warnings. */
	char warnings[1024];
};

/*
 * Reads the OTEL_* variables through get (getenv, or a table in tests) with
 * the specification's defaults. 0, or -1 with err for what cannot start:
 * OTEL_EXPORTER_OTLP_PROTOCOL grpc or another unknown one, an endpoint that
 * is not an http:// or https:// URL. A value that is not valid otherwise is
 * a warning (c->warnings) and its default is used, as the specification
 * asks. Pure: nothing but get is read.
 */
int otelconf_parse(struct otelconf *c, const char *(*get)(const char *name),
                   char *err, size_t errlen);

/* --check-config: one line or two of what export would use. */
void otelconf_print(const struct otelconf *c, FILE *out);

/* The sampler's name as OTEL_TRACES_SAMPLER spells it. */
const char *otelconf_sampler_name(enum otelconf_sampler s);

#endif
