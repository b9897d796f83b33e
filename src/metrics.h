/* SPDX-License-Identifier: MIT */
/* metrics.h -- request counters and histograms, Prometheus text output */
#ifndef MICROD_METRICS_H
#define MICROD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

/* Routes the counters can tell apart; the route table must not exceed it. */
#define METRICS_MAX_ROUTES 30

/* Stands for "no route matched" where a route index is asked for. */
#define METRICS_UNMATCHED ((size_t)-1)

/* Records the start time; call once before the pool starts. 0 or -1. */
int metrics_init(void);

/* Gauges, moved by the server as connections and requests come and go. */
/* Returns the count with this one. */
unsigned int metrics_connection_opened(void);
void metrics_connection_closed(void);
void metrics_request_started(void);
void metrics_request_finished(void);
unsigned int metrics_connections(void);
/* A client refused at the connection limit. */
void metrics_connection_refused(void);
/* A client connection microd closed while it waited for a request head:
 * past --header-timeout (a first head, or an idle keep-alive's next), or to
 * make room at the connection limit. */
enum metrics_closed {
	METRICS_CLOSED_HEADER_TIMEOUT,
	METRICS_CLOSED_IDLE,
	METRICS_CLOSED_EVICTED,
	METRICS_CLOSED_N
};
void metrics_connection_cut(enum metrics_closed why);
unsigned int metrics_in_flight(void);

/* The handler pool: its size, moves between queued and busy (+1/-1), and a
 * request refused because it was full. */
void metrics_handler_threads(unsigned int n);
void metrics_handler_moved(int queued, int busy);
void metrics_handler_rejected(void);

/* Counts one check of the pool by the watchdog, by its result. */
enum metrics_check {
	METRICS_CHECK_OK,
	METRICS_CHECK_FULL,
	METRICS_CHECK_FAILED
};
void metrics_watchdog_check(enum metrics_check result);

/* The span exporter (src/export.c): spans a receiver took, spans dropped
 * (the queue full, or left at a stop), batches given up. */
void metrics_otel_exported(size_t n);
void metrics_otel_dropped(size_t n);
void metrics_otel_failed(void);

/* Counts one answered request: route is router_index() or METRICS_UNMATCHED. */
void metrics_observe(const char *method, size_t route, unsigned int status,
                     long long duration_ns);

/* Upper bounds of every histogram's buckets: 100 µs to 10 s, and +Inf. */
#define METRICS_BOUNDS 16

/*
 * One histogram's series: per-bucket counts (summed at scrape time) and the
 * sum, added to with relaxed atomics only, so any thread may observe. Zeroed
 * memory is an empty histogram.
 */
struct metrics_histogram {
	atomic_ullong bucket[METRICS_BOUNDS + 1]; /* not cumulative */
	atomic_ullong sum_ns;
};

void metrics_histogram_observe(struct metrics_histogram *h,
                               long long duration_ns);

/* Its count of observations. */
unsigned long long metrics_histogram_count(const struct metrics_histogram *h);

/*
 * Writes name's _bucket, _sum and _count lines of h (no HELP or TYPE),
 * labelled by labels: name, value, name, value, ..., NULL (values escaped
 * here). Nothing when h is empty and skip_empty.
 */
void metrics_histogram_render(FILE *f, const char *name,
                              const char *const *labels,
                              const struct metrics_histogram *h,
                              int skip_empty);

/* A label's value, escaped as the text format wants. */
void metrics_put_label(FILE *f, const char *value);

/*
 * The Prometheus text exposition (format 0.0.4) of everything above, the
 * process collector and build info, then what extra (NULL: none) writes.
 * Returns a malloc'd string, or NULL.
 */
char *metrics_render(size_t *len, void (*extra)(void *arg, FILE *f), void *arg);

#endif
