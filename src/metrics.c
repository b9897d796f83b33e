/* SPDX-License-Identifier: MIT */
/* metrics.c -- request counters and histograms, Prometheus text output */
#include "metrics.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "router.h"
#include "state.h"
#include "status.h"
#include "version.h"

static const char *const methods[] = {"GET",    "HEAD",  "POST",    "PUT",
                                      "DELETE", "PATCH", "OPTIONS", "other"};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

/* Every registered status (src/status.c); anything else counts as "other". */
#define N_CODES STATUS_COUNT

/* Upper bounds in seconds, 100 µs to 10 s; +Inf is implied. */
static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                1,      2.5,     5,      10};
#define N_BOUNDS (sizeof(bounds) / sizeof(bounds[0]))
_Static_assert(N_BOUNDS == METRICS_BOUNDS, "metrics.h counts the bounds");

/*
 * make bench builds a second microd with -DMICROD_REQUEST_METRICS=0, which
 * leaves the per-request counters and histograms out, to measure their cost.
 * The gauges stay: the drain depends on them.
 */
#ifndef MICROD_REQUEST_METRICS
#define MICROD_REQUEST_METRICS 1
#endif

/* One more row for requests no route matched. */
#define N_ROUTE_ROWS (METRICS_MAX_ROUTES + 1)

/*
 * Shared by every pool thread: only relaxed atomic adds on the request path,
 * no lock. Bucket counts are stored per bucket and summed at scrape time, so
 * a request costs one add per series it touches.
 */
static struct {
	atomic_ullong requests[N_ROUTE_ROWS][N_METHODS][N_CODES + 1];
	struct metrics_histogram duration[N_ROUTE_ROWS][N_METHODS];
	atomic_uint connections;
	atomic_uint in_flight;
	double start_time; /* written once by metrics_init */
} m;

int
metrics_init(void)
{
	struct timespec ts;

	if (router_count() > METRICS_MAX_ROUTES)
		return -1;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -1;
	m.start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	return 0;
}

unsigned int
metrics_connection_opened(void)
{
	return atomic_fetch_add_explicit(&m.connections, 1,
	                                 memory_order_relaxed) +
	       1;
}

void
metrics_connection_closed(void)
{
	atomic_fetch_sub_explicit(&m.connections, 1, memory_order_relaxed);
}

void
metrics_request_started(void)
{
	atomic_fetch_add_explicit(&m.in_flight, 1, memory_order_relaxed);
}

void
metrics_request_finished(void)
{
	atomic_fetch_sub_explicit(&m.in_flight, 1, memory_order_relaxed);
}

unsigned int
metrics_connections(void)
{
	return atomic_load(&m.connections);
}

unsigned int
metrics_in_flight(void)
{
	return atomic_load(&m.in_flight);
}

static size_t
method_index(const char *method)
{
	for (size_t i = 0; i < N_METHODS - 1; i++)
		if (strcmp(methods[i], method) == 0)
			return i;
	return N_METHODS - 1;
}

static size_t
code_index(unsigned int status)
{
	return status_index(status);
}

static size_t
route_row(size_t route)
{
	return route < METRICS_MAX_ROUTES ? route : METRICS_MAX_ROUTES;
}

void
metrics_histogram_observe(struct metrics_histogram *h, long long duration_ns)
{
	double secs = (double)duration_ns / 1e9;
	size_t b = 0;

	while (b < N_BOUNDS && secs > bounds[b])
		b++;
	atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(
	    &h->sum_ns, (unsigned long long)(duration_ns > 0 ? duration_ns : 0),
	    memory_order_relaxed);
}

unsigned long long
metrics_histogram_count(const struct metrics_histogram *h)
{
	unsigned long long n = 0;

	for (size_t i = 0; i <= N_BOUNDS; i++)
		n += atomic_load(&h->bucket[i]);
	return n;
}

void
metrics_observe(const char *method, size_t route, unsigned int status,
                long long duration_ns)
{
	if (!MICROD_REQUEST_METRICS)
		return;
	size_t r = route_row(route), mi = method_index(method);

	atomic_fetch_add_explicit(&m.requests[r][mi][code_index(status)], 1,
	                          memory_order_relaxed);
	metrics_histogram_observe(&m.duration[r][mi], duration_ns);
}

/* Label values are ours (route patterns, versions) but escaped all the same. */
void
metrics_put_label(FILE *f, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static const char *
route_name(size_t r)
{
	return r < router_count() ? router_at(r)->path : "unmatched";
}

static void
render_requests(FILE *f)
{
	fputs("# HELP http_requests_total Requests answered, by method, route "
	      "pattern and status code.\n"
	      "# TYPE http_requests_total counter\n",
	      f);
	for (size_t r = 0; r < N_ROUTE_ROWS; r++)
		for (size_t mi = 0; mi < N_METHODS; mi++)
			for (size_t c = 0; c <= N_CODES; c++) {
				unsigned long long n =
				    atomic_load(&m.requests[r][mi][c]);

				if (n == 0)
					continue;
				fprintf(
				    f,
				    "http_requests_total{method=\"%s\",route="
				    "\"",
				    methods[mi]);
				metrics_put_label(f, route_name(r));
				if (c < N_CODES)
					fprintf(f, "\",code=\"%u\"} %llu\n",
					        status_code(c), n);
				else
					fprintf(f, "\",code=\"other\"} %llu\n",
					        n);
			}
}

/* labels: name, value, ..., NULL; then le when given; no braces for none. */
static void
put_labels(FILE *f, const char *const *labels, const char *le)
{
	const char *sep = "{";

	for (; labels != NULL && labels[0] != NULL; labels += 2) {
		fprintf(f, "%s%s=\"", sep, labels[0]);
		metrics_put_label(f, labels[1]);
		fputc('"', f);
		sep = ",";
	}
	if (le != NULL)
		fprintf(f, "%sle=\"%s\"", sep, le);
	if (le != NULL || *sep == ',')
		fputc('}', f);
}

void
metrics_histogram_render(FILE *f, const char *name, const char *const *labels,
                         const struct metrics_histogram *h, int skip_empty)
{
	unsigned long long cum = 0, b[N_BOUNDS + 1];
	char le[32];

	for (size_t i = 0; i <= N_BOUNDS; i++) {
		b[i] = atomic_load(&h->bucket[i]);
		cum += b[i];
	}
	if (cum == 0 && skip_empty)
		return;
	cum = 0;
	for (size_t i = 0; i <= N_BOUNDS; i++) {
		cum += b[i];
		if (i < N_BOUNDS)
			snprintf(le, sizeof(le), "%g", bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		fprintf(f, "%s_bucket", name);
		put_labels(f, labels, le);
		fprintf(f, " %llu\n", cum);
	}
	fprintf(f, "%s_sum", name);
	put_labels(f, labels, NULL);
	fprintf(f, " %.9f\n%s_count", (double)atomic_load(&h->sum_ns) / 1e9,
	        name);
	put_labels(f, labels, NULL);
	fprintf(f, " %llu\n", cum);
}

static void
render_durations(FILE *f)
{
	fputs("# HELP http_request_duration_seconds Time from the request's "
	      "headers to its last response byte.\n"
	      "# TYPE http_request_duration_seconds histogram\n",
	      f);
	for (size_t r = 0; r < N_ROUTE_ROWS; r++)
		for (size_t mi = 0; mi < N_METHODS; mi++) {
			const char *const labels[] = {"method", methods[mi],
			                              "route", route_name(r),
			                              NULL};

			metrics_histogram_render(
			    f, "http_request_duration_seconds", labels,
			    &m.duration[r][mi], 1);
		}
}

static int
count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* less the one opendir holds */
}

static void
render_process(FILE *f)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long long vm_pages = 0, rss_pages = 0;
	long page = sysconf(_SC_PAGESIZE);
	FILE *statm = fopen("/proc/self/statm", "r");
	int fds;

	if (statm != NULL) {
		if (fscanf(statm, "%llu %llu", &vm_pages, &rss_pages) != 2)
			vm_pages = rss_pages = 0;
		fclose(statm);
	}
	fds = count_open_fds(); /* with statm closed: only opendir's own */
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		fprintf(
		    f,
		    "# HELP process_cpu_seconds_total Total user and system "
		    "CPU time spent in seconds.\n"
		    "# TYPE process_cpu_seconds_total counter\n"
		    "process_cpu_seconds_total %.6f\n",
		    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		        (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
		            1e6);
	fprintf(f,
	        "# HELP process_resident_memory_bytes Resident memory size in "
	        "bytes.\n"
	        "# TYPE process_resident_memory_bytes gauge\n"
	        "process_resident_memory_bytes %llu\n"
	        "# HELP process_virtual_memory_bytes Virtual memory size in "
	        "bytes.\n"
	        "# TYPE process_virtual_memory_bytes gauge\n"
	        "process_virtual_memory_bytes %llu\n",
	        rss_pages * (unsigned long long)page,
	        vm_pages * (unsigned long long)page);
	if (fds >= 0)
		fprintf(f,
		        "# HELP process_open_fds Number of open file "
		        "descriptors.\n"
		        "# TYPE process_open_fds gauge\n"
		        "process_open_fds %d\n",
		        fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		fprintf(f,
		        "# HELP process_max_fds Maximum number of open file "
		        "descriptors.\n"
		        "# TYPE process_max_fds gauge\n"
		        "process_max_fds %llu\n",
		        (unsigned long long)rl.rlim_cur);
	fprintf(f,
	        "# HELP process_start_time_seconds Start time of the process "
	        "since unix epoch in seconds.\n"
	        "# TYPE process_start_time_seconds gauge\n"
	        "process_start_time_seconds %.3f\n",
	        m.start_time);
}

/* Shared: the watchdog thread counts, scrapes read. */
static atomic_ullong watchdog_checks[3];
/* Shared: pool threads count, scrapes read. */
static atomic_ullong connections_refused;

void
metrics_connection_refused(void)
{
	atomic_fetch_add(&connections_refused, 1);
}

/* Shared: the header sweep and pool threads count, scrapes read. */
static atomic_ullong connections_closed[METRICS_CLOSED_N];

void
metrics_connection_cut(enum metrics_closed why)
{
	atomic_fetch_add(&connections_closed[why], 1);
}

/* The handler pool's gauges and counter (src/pool.c). */
static atomic_int handler_queued, handler_busy;
static atomic_uint handler_threads;
static atomic_ullong handler_rejected;

void
metrics_handler_threads(unsigned int n)
{
	atomic_store(&handler_threads, n);
}

void
metrics_handler_moved(int queued, int busy)
{
	atomic_fetch_add(&handler_queued, queued);
	atomic_fetch_add(&handler_busy, busy);
}

void
metrics_handler_rejected(void)
{
	atomic_fetch_add(&handler_rejected, 1);
}

/* Shared: the exporter's thread and the pool threads count, scrapes
 * read. */
static atomic_ullong otel_exported, otel_dropped, otel_failed;

void
metrics_otel_exported(size_t n)
{
	atomic_fetch_add(&otel_exported, n);
}

void
metrics_otel_dropped(size_t n)
{
	atomic_fetch_add(&otel_dropped, n);
}

void
metrics_otel_failed(void)
{
	atomic_fetch_add(&otel_failed, 1);
}

void
metrics_watchdog_check(enum metrics_check result)
{
	atomic_fetch_add(&watchdog_checks[result], 1);
}

char *
metrics_render(size_t *len, void (*extra)(void *arg, FILE *f), void *arg)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	if (f == NULL)
		return NULL;
	render_requests(f);
	render_durations(f);
	fprintf(f,
	        "# HELP http_requests_in_flight Requests being handled now.\n"
	        "# TYPE http_requests_in_flight gauge\n"
	        "http_requests_in_flight %u\n"
	        "# HELP microd_connections Open client connections, idle "
	        "keep-alives included.\n"
	        "# TYPE microd_connections gauge\n"
	        "microd_connections %u\n"
	        "# HELP microd_ready 1 while /ready answers 200, else 0.\n"
	        "# TYPE microd_ready gauge\n"
	        "microd_ready %d\n"
	        "# HELP microd_log_lines_dropped_total Log lines dropped "
	        "because stderr was not read fast enough.\n"
	        "# TYPE microd_log_lines_dropped_total counter\n"
	        "microd_log_lines_dropped_total %llu\n"
	        "# HELP microd_connections_refused_total Client connections "
	        "refused at the connection limit.\n"
	        "# TYPE microd_connections_refused_total counter\n"
	        "microd_connections_refused_total %llu\n"
	        "# HELP microd_connections_closed_total Client connections "
	        "microd closed while they waited for a request head: "
	        "header_timeout, a first head past --header-timeout; idle, a "
	        "keep-alive connection's next head past it; evicted, the "
	        "longest waiting, to make room at the connection limit.\n"
	        "# TYPE microd_connections_closed_total counter\n"
	        "microd_connections_closed_total{reason=\"header_timeout\"} "
	        "%llu\n"
	        "microd_connections_closed_total{reason=\"idle\"} %llu\n"
	        "microd_connections_closed_total{reason=\"evicted\"} %llu\n"
	        "# HELP microd_watchdog_checks_total Checks of every worker "
	        "thread by the watchdog, by result: ok, full (refused at the "
	        "connection limit, counted as alive), failed.\n"
	        "# TYPE microd_watchdog_checks_total counter\n"
	        "microd_watchdog_checks_total{result=\"ok\"} %llu\n"
	        "microd_watchdog_checks_total{result=\"full\"} %llu\n"
	        "microd_watchdog_checks_total{result=\"failed\"} %llu\n"
	        "# HELP microd_handler_threads Threads of the handler pool, "
	        "which runs the routes that may block.\n"
	        "# TYPE microd_handler_threads gauge\n"
	        "microd_handler_threads %u\n"
	        "# HELP microd_handler_busy Handler-pool threads running a "
	        "handler now.\n"
	        "# TYPE microd_handler_busy gauge\n"
	        "microd_handler_busy %d\n"
	        "# HELP microd_handler_queue_depth Requests waiting for a "
	        "handler-pool thread.\n"
	        "# TYPE microd_handler_queue_depth gauge\n"
	        "microd_handler_queue_depth %d\n"
	        "# HELP microd_handler_rejected_total Requests refused with "
	        "503 because every handler-pool thread was busy and the queue "
	        "full.\n"
	        "# TYPE microd_handler_rejected_total counter\n"
	        "microd_handler_rejected_total %llu\n"
	        "# HELP microd_otel_spans_exported_total Spans an OTLP "
	        "receiver accepted.\n"
	        "# TYPE microd_otel_spans_exported_total counter\n"
	        "microd_otel_spans_exported_total %llu\n"
	        "# HELP microd_otel_spans_dropped_total Spans dropped "
	        "unsent: the export queue was full, or still held them when "
	        "the export timeout ended a shutdown.\n"
	        "# TYPE microd_otel_spans_dropped_total counter\n"
	        "microd_otel_spans_dropped_total %llu\n"
	        "# HELP microd_otel_export_failures_total Batches of spans "
	        "given up: refused (a 400), or never accepted within the "
	        "export timeout.\n"
	        "# TYPE microd_otel_export_failures_total counter\n"
	        "microd_otel_export_failures_total %llu\n"
	        "# HELP microd_build_info The running build; always 1.\n"
	        "# TYPE microd_build_info gauge\n"
	        "microd_build_info{version=\"",
	        metrics_in_flight(), metrics_connections(),
	        state_get() == STATE_READY, log_dropped(),
	        atomic_load(&connections_refused),
	        atomic_load(&connections_closed[METRICS_CLOSED_HEADER_TIMEOUT]),
	        atomic_load(&connections_closed[METRICS_CLOSED_IDLE]),
	        atomic_load(&connections_closed[METRICS_CLOSED_EVICTED]),
	        atomic_load(&watchdog_checks[METRICS_CHECK_OK]),
	        atomic_load(&watchdog_checks[METRICS_CHECK_FULL]),
	        atomic_load(&watchdog_checks[METRICS_CHECK_FAILED]),
	        atomic_load(&handler_threads), atomic_load(&handler_busy),
	        atomic_load(&handler_queued), atomic_load(&handler_rejected),
	        atomic_load(&otel_exported), atomic_load(&otel_dropped),
	        atomic_load(&otel_failed));
	metrics_put_label(f, MICROD_VERSION);
	fputs("\",commit=\"", f);
	metrics_put_label(f, MICROD_COMMIT);
	fputs("\"} 1\n", f);
	render_process(f);
	if (extra != NULL)
		extra(arg, f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
