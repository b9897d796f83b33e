/* SPDX-License-Identifier: MIT */
/*
 * export.c -- finished spans to an OTLP/HTTP receiver as JSON: a bounded
 * queue, batches on a thread of their own, retries
 */
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "encode.h"
#include "log.h"
#include "metrics.h"
#include "outbound.h"
#include "version.h"

/* Backoff: the first wait, and the most any wait grows to. */
#define BACKOFF_FIRST_MS 1000LL
#define BACKOFF_MAX_MS 32000LL

/*
 * Shared between the threads that push (the server's) and the exporter's
 * thread: everything under lock but conf, headers and the thread, which
 * are set before the thread starts and never change.
 */
struct export
{
	struct otelconf conf;
	char headers[2048]; /* OTEL_EXPORTER_OTLP_HEADERS as header lines */
	pthread_mutex_t lock;
	pthread_cond_t wake; /* a span queued, a stop, or the thread done */
	struct span **queue; /* a ring of conf.max_queue */
	size_t head, count;
	int stopping, done;
	long long stop_deadline_ms;
	int cancel[2]; /* a pipe: written when the stop's deadline passes */
	pthread_t thread;
	unsigned int rnd; /* the jitter's state; the thread's own */
};

enum export_verdict
export_verdict(int status)
{
	if (status >= 200 && status <= 299)
		return EXPORT_DONE;
	if (status < 0 || status == 429 || status == 502 || status == 503 ||
	    status == 504)
		return EXPORT_RETRY;
	return EXPORT_DROP;
}

long long
export_backoff_ms(unsigned int attempt, long long retry_after_ms,
                  unsigned int r)
{
	long long base = BACKOFF_FIRST_MS, wait;

	for (unsigned int i = 1; i < attempt && base < BACKOFF_MAX_MS; i++)
		base *= 2;
	if (base > BACKOFF_MAX_MS)
		base = BACKOFF_MAX_MS;
	wait = base / 2 + (long long)(r % (unsigned int)(base / 2));
	/* A Retry-After shorter than the backoff (0: "now") would have a
	 * busy collector asked again at once, thousands of times a second. */
	return retry_after_ms > wait ? retry_after_ms : wait;
}

/* The request body being written: grows as it goes; failed when memory
 * ran out (the batch is then dropped). */
struct body {
	char *p;
	size_t len, cap;
	int failed;
};

/* Room for n more bytes: 0, or -1 (failed). */
static int
body_room(struct body *b, size_t n)
{
	size_t cap = b->cap != 0 ? b->cap : 4096;
	char *p;

	if (b->failed)
		return -1;
	if (b->len + n <= b->cap)
		return 0;
	while (cap < b->len + n)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

static void
body_raw(struct body *b, const char *s)
{
	size_t n = strlen(s);

	if (body_room(b, n) == 0) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

/* s as a JSON string (encode.c's escaping, bytes that are not UTF-8 as
 * U+FFFD). */
static void
body_str(struct body *b, const char *s)
{
	size_t n =
	    b->failed ? 0 : encode_json_text(s, b->p + b->len, b->cap - b->len);

	if (b->failed)
		return;
	if (b->len + n > b->cap) { /* it did not fit: again, with room */
		if (body_room(b, n) != 0)
			return;
		n = encode_json_text(s, b->p + b->len, b->cap - b->len);
	}
	b->len += n;
}

/* v in decimal, quoted (as proto3's JSON writes an int64) or not. */
static void
body_num(struct body *b, long long v, int quoted)
{
	char digits[32];
	size_t n = encode_json_integer(v, digits + 1, sizeof(digits) - 3);

	digits[0] = '"';
	digits[n + 1] = quoted ? '"' : '\0';
	digits[n + 2] = '\0';
	body_raw(b, quoted ? digits : digits + 1);
}

static void
body_int64(struct body *b, long long v)
{
	body_num(b, v, 1);
}

/* {"key": key, "value": {"stringValue": v}} or intValue n. */
static void
body_attr(struct body *b, const char *key, const char *str, long long num)
{
	body_raw(b, "{\"key\":");
	body_str(b, key);
	body_raw(b, str != NULL ? ",\"value\":{\"stringValue\":"
	                        : ",\"value\":{\"intValue\":");
	if (str != NULL)
		body_str(b, str);
	else
		body_int64(b, num);
	body_raw(b, "}}");
}

static void
body_resource(struct body *b, const struct otelconf *c)
{
	int sdk_name = 0, sdk_version = 0;

	body_raw(b, "{\"attributes\":[");
	body_attr(b, "service.name", c->service_name, 0);
	for (size_t i = 0; i < c->n_resource; i++) {
		const char *k = c->resource[i].key;

		if (strcmp(k, "service.name") == 0)
			continue; /* OTEL_SERVICE_NAME's, or this one */
		sdk_name |= strcmp(k, "telemetry.sdk.name") == 0;
		sdk_version |= strcmp(k, "telemetry.sdk.version") == 0;
		body_raw(b, ",");
		body_attr(b, k, c->resource[i].value, 0);
	}
	if (!sdk_name) {
		body_raw(b, ",");
		body_attr(b, "telemetry.sdk.name", "microd", 0);
	}
	if (!sdk_version) {
		body_raw(b, ",");
		body_attr(b, "telemetry.sdk.version", MICROD_VERSION, 0);
	}
	body_raw(b, "]}");
}

static void
body_span(struct body *b, const struct span *s)
{
	body_raw(b, "{\"traceId\":");
	body_str(b, s->trace_id);
	body_raw(b, ",\"spanId\":");
	body_str(b, s->span_id);
	if (s->parent_id[0] != '\0') {
		body_raw(b, ",\"parentSpanId\":");
		body_str(b, s->parent_id);
	}
	body_raw(b, ",\"name\":");
	body_str(b, s->name);
	body_raw(b, ",\"kind\":");
	body_num(b, s->kind, 0);
	body_raw(b, ",\"startTimeUnixNano\":");
	body_int64(b, s->start_unix_ns);
	body_raw(b, ",\"endTimeUnixNano\":");
	body_int64(b, s->end_unix_ns);
	body_raw(b, ",\"attributes\":[");
	for (size_t i = 0; i < s->n_attrs; i++) {
		if (i > 0)
			body_raw(b, ",");
		body_attr(b, s->attrs[i].key, s->attrs[i].str, s->attrs[i].num);
	}
	body_raw(b, "]");
	if (s->error)
		body_raw(b, ",\"status\":{\"code\":2}");
	body_raw(b, "}");
}

char *
export_encode(const struct otelconf *c, struct span *const *spans, size_t n,
              size_t *len)
{
	struct body b = {0};

	/* Written as it goes, not built as a tree first: the exporter writes
	 * every span the service makes, on a CPU the requests share. */
	body_raw(&b, "{\"resourceSpans\":[{\"resource\":");
	body_resource(&b, c);
	body_raw(&b, ",\"scopeSpans\":[{\"scope\":{\"name\":\"microd\","
	             "\"version\":");
	body_str(&b, MICROD_VERSION);
	body_raw(&b, "},\"spans\":[");
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			body_raw(&b, ",");
		body_span(&b, spans[i]);
	}
	body_raw(&b, "]}]}]}");
	if (body_room(&b, 1) != 0) {
		free(b.p);
		return NULL;
	}
	b.p[b.len] = '\0';
	*len = b.len;
	return b.p;
}

/* rand_r-like xorshift: the jitter needs no quality, only spread. */
static unsigned int
next_random(unsigned int *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* Waits on wake until ms from now, or a stop; the lock is held. */
static void
wait_ms(struct export *e, long long ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&e->wake, &e->lock, &until);
}

/* One POST of body; the status (-1: no answer) and the Retry-After. */
static int
post(struct export *e, const char *body, size_t len, long long timeout_ms,
     long long *retry_after_ms, char *why, size_t wlen)
{
	const struct outbound_target t = {.host = e->conf.host,
	                                  .port = e->conf.port,
	                                  .tls = e->conf.tls,
	                                  .cacert = NULL};
	struct outbound o;
	int status = -1;

	*retry_after_ms = -1;
	if (outbound_open(&o, &t, timeout_ms, e->cancel[0], why, wlen) == 0)
		(void)outbound_post(&o, e->conf.path, "microd/" MICROD_VERSION,
		                    e->headers, "application/json", body, len,
		                    &status, retry_after_ms, why, wlen);
	outbound_close(&o);
	return status;
}

/*
 * Sends one batch, again while the receiver asks for it, for as long as
 * the export timeout lasts from now (and no longer than a stop's deadline).
 */
static void
send_batch(struct export *e, struct span *const *batch, size_t n)
{
	long long give_up = now_ms() + e->conf.export_timeout_ms;
	size_t len = 0;
	char *body = export_encode(&e->conf, batch, n, &len);
	char why[256] = "cannot encode the spans";
	int status = -1;

	for (unsigned int attempt = 1; body != NULL; attempt++) {
		long long left, wait, retry_after;
		enum export_verdict v;

		pthread_mutex_lock(&e->lock);
		if (e->stopping && e->stop_deadline_ms < give_up)
			give_up = e->stop_deadline_ms;
		pthread_mutex_unlock(&e->lock);
		left = give_up - now_ms();
		if (left <= 0)
			break;
		status = post(e, body, len,
		              left < e->conf.otlp_timeout_ms
		                  ? left
		                  : e->conf.otlp_timeout_ms,
		              &retry_after, why, sizeof(why));
		v = export_verdict(status);
		if (v == EXPORT_DONE) {
			metrics_otel_exported(n);
			free(body);
			return;
		}
		if (v == EXPORT_DROP)
			break;
		wait = export_backoff_ms(attempt, retry_after,
		                         next_random(&e->rnd));
		if (now_ms() + wait >= give_up)
			break;
		pthread_mutex_lock(&e->lock);
		wait_ms(e, wait); /* a stop cuts it short: try once more */
		pthread_mutex_unlock(&e->lock);
	}
	free(body);
	metrics_otel_failed();
	log_warn("traces: %zu spans not exported to %s: %s", n, e->conf.url,
	         status > 0 && export_verdict(status) == EXPORT_DROP ? why
	         : status > 0 ? "still refused at the export timeout"
	                      : why);
}

static void *
run(void *arg)
{
	struct export *e = arg;
	struct span **batch = calloc(e->conf.max_batch, sizeof(struct span *));

	pthread_mutex_lock(&e->lock);
	for (;;) {
		long long until = now_ms() + e->conf.schedule_delay_ms;
		size_t n = 0;

		while (!e->stopping && e->count < e->conf.max_batch &&
		       now_ms() < until)
			wait_ms(e, until - now_ms());
		if (e->stopping &&
		    (e->count == 0 || now_ms() >= e->stop_deadline_ms))
			break; /* what is left is counted dropped */
		while (batch != NULL && n < e->conf.max_batch && e->count > 0) {
			batch[n++] = e->queue[e->head];
			e->head = (e->head + 1) % e->conf.max_queue;
			e->count--;
		}
		pthread_mutex_unlock(&e->lock);
		if (n > 0)
			send_batch(e, batch, n);
		for (size_t i = 0; i < n; i++)
			free(batch[i]);
		pthread_mutex_lock(&e->lock);
	}
	e->done = 1;
	pthread_cond_broadcast(&e->wake);
	pthread_mutex_unlock(&e->lock);
	free(batch);
	return NULL;
}

/* OTEL_EXPORTER_OTLP_HEADERS as header lines; a pair whose name or value
 * would break the head is left out. */
static void
header_lines(struct export *e)
{
	size_t used = 0;

	for (size_t i = 0; i < e->conf.n_headers; i++) {
		const struct otelconf_pair *p = &e->conf.headers[i];
		int n;

		if (strpbrk(p->key, "\r\n: \t") != NULL ||
		    strpbrk(p->value, "\r\n") != NULL) {
			log_warn("OTEL_EXPORTER_OTLP_HEADERS: %.64s left out: "
			         "not a header name and value",
			         p->key);
			continue;
		}
		n = snprintf(e->headers + used, sizeof(e->headers) - used,
		             "%s: %s\r\n", p->key, p->value);
		if (n < 0 || (size_t)n >= sizeof(e->headers) - used) {
			e->headers[used] = '\0';
			log_warn("OTEL_EXPORTER_OTLP_HEADERS: too long; %.64s "
			         "and those after it left out",
			         p->key);
			return;
		}
		used += (size_t)n;
	}
}

struct export *
export_start(const struct otelconf *c, char *why, size_t len)
{
	struct export *e = calloc(1, sizeof(*e));
	pthread_condattr_t attr;
	long long seed = now_ns();

	if (e == NULL) {
		snprintf(why, len, "out of memory");
		return NULL;
	}
	e->conf = *c;
	e->cancel[0] = e->cancel[1] = -1;
	e->rnd = (unsigned int)(seed ^ (seed >> 32)) | 1u;
	header_lines(e);
	e->queue = calloc(c->max_queue, sizeof(struct span *));
	if (e->queue == NULL || pipe(e->cancel) != 0 ||
	    fcntl(e->cancel[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(e->cancel[1], F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(why, len, "out of memory or descriptors");
		goto fail;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (pthread_create(&e->thread, NULL, run, e) != 0) {
		snprintf(why, len, "cannot start its thread");
		pthread_cond_destroy(&e->wake);
		pthread_mutex_destroy(&e->lock);
		goto fail;
	}
	return e;
fail:
	if (e->cancel[0] >= 0) {
		close(e->cancel[0]);
		close(e->cancel[1]);
	}
	free(e->queue);
	free(e);
	return NULL;
}

void
export_push(struct export *e, struct span *s)
{
	int kept = 0;

	pthread_mutex_lock(&e->lock);
	if (!e->stopping && e->count < e->conf.max_queue) {
		e->queue[(e->head + e->count) % e->conf.max_queue] = s;
		e->count++;
		kept = 1;
		if (e->count == e->conf.max_batch)
			pthread_cond_signal(&e->wake);
	}
	pthread_mutex_unlock(&e->lock);
	if (!kept) {
		free(s);
		metrics_otel_dropped(1);
	}
}

void
export_stop(struct export *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = 1;
	e->stop_deadline_ms = now_ms() + e->conf.export_timeout_ms;
	pthread_cond_broadcast(&e->wake);
	while (!e->done && now_ms() < e->stop_deadline_ms)
		wait_ms(e, e->stop_deadline_ms - now_ms());
	pthread_mutex_unlock(&e->lock);
	/* Past the deadline a POST in flight is cut short: every wait of
	 * the client polls this pipe. */
	while (write(e->cancel[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(e->thread, NULL);
	for (size_t i = 0; i < e->count; i++) /* left when cut short */
		free(e->queue[(e->head + i) % e->conf.max_queue]);
	if (e->count > 0)
		metrics_otel_dropped(e->count);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->lock);
	close(e->cancel[0]);
	close(e->cancel[1]);
	free(e->queue);
	free(e);
}
