/* SPDX-License-Identifier: MIT */
/* observe.c -- /metrics, /version, the access log and request ids */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"

/* Requests counted so far on every route but /metrics itself. */
static double
counted(const char *text)
{
	const char *name = "http_requests_total{";
	double sum = 0;

	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *eol = strchr(p, '\n');
		const char *sp = eol != NULL ? memchr(p, ' ', (size_t)(eol - p))
		                             : strchr(p, ' ');

		if (strncmp(p, name, strlen(name)) == 0 && sp != NULL &&
		    !(strstr(p, "route=\"/metrics\"") != NULL &&
		      strstr(p, "route=\"/metrics\"") < sp))
			sum += strtod(sp + 1, NULL);
		p = eol != NULL ? eol + 1 : NULL;
	}
	return sum;
}

/* The value of the sample whose name and labels are exactly series. */
static double
sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static char *
scrape(const struct microd *m)
{
	struct http_result r = http_get(m->base, "/metrics");
	char *text = r.status == 200 ? strdup(r.body) : NULL;

	http_result_free(&r);
	return text;
}

/*
 * A request is counted when libmicrohttpd reports it complete, just after
 * its last byte went out, so a client can read its answer a moment before
 * it is counted. Scrapes until at least want requests (other than scrapes)
 * are counted, or 5 s pass; exactly want is then asserted by the caller.
 */
static char *
scrape_counted(const struct microd *m, double want)
{
	long long deadline = now_ms() + 5000;
	char *text;

	for (;;) {
		text = scrape(m);
		if (text == NULL || counted(text) >= want ||
		    now_ms() > deadline)
			return text;
		free(text);
		pause_ms(2);
	}
}

/* promtool's verdict on a scrape; -1 when promtool is missing. */
static int
promtool_check(const char *text, char *out, size_t len)
{
	char path[] = "/tmp/microd-scrape-XXXXXX", cmd[128];
	int fd = mkstemp(path), st;
	FILE *p;
	size_t n;

	if (fd < 0)
		return -1;
	if (write(fd, text, strlen(text)) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	st = pclose(p);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
send_n(const struct microd *m, const char *method, const char *path,
       const char *body, int n)
{
	struct http_opts o = {.method = method,
	                      .content_type =
	                          body != NULL ? "application/json" : NULL,
	                      .body = body,
	                      .body_len = body != NULL ? strlen(body) : 0};

	for (int i = 0; i < n; i++) {
		struct http_result r = http_do(m->base, path, &o);

		http_result_free(&r);
	}
}

static void
test_metrics(void)
{
	/* The delay keeps /metrics served while the drain has begun. */
	static const char *const args[] = {"--drain-delay", "2", NULL};
	struct microd m;
	char *before, *after, out[4096];
	int rc;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	send_n(&m, "GET", "/health", NULL, 1); /* every series exists */
	before = scrape_counted(&m, 1);
	send_n(&m, "GET", "/health", NULL, 7);
	send_n(&m, "HEAD", "/health", NULL, 2);
	send_n(&m, "POST", "/echo", "{\"a\":1}", 3);
	send_n(&m, "POST", "/echo", "{", 2);
	send_n(&m, "GET", "/nope/1", NULL, 4);
	send_n(&m, "GET", "/nope/2", NULL, 1);
	send_n(&m, "DELETE", "/health", NULL, 1);
	send_n(&m, "BREW", "/health", NULL, 2);
	after = scrape_counted(&m, 1 + 7 + 2 + 3 + 2 + 4 + 1 + 1 + 2);
	ok(before != NULL && after != NULL, "two scrapes of /metrics");
	if (before == NULL || after == NULL)
		goto out;

	rc = promtool_check(after, out, sizeof(out));
	ok(rc == 0, "promtool check metrics accepts the scrape%s%s",
	   rc == 0 ? "" : ": ", rc == 0 ? "" : out);

#define DELTA(series)                                                          \
	(sample(after, series) -                                               \
	 (sample(before, series) < 0 ? 0 : sample(before, series)))
	is(DELTA("http_requests_total{method=\"GET\",route=\"/health\","
	         "code=\"200\"}"),
	   7, "7 GETs of /health counted");
	is(DELTA("http_requests_total{method=\"HEAD\",route=\"/health\","
	         "code=\"200\"}"),
	   2, "2 HEADs counted apart");
	is(DELTA("http_requests_total{method=\"POST\",route=\"/echo\","
	         "code=\"200\"}"),
	   3, "3 good echoes");
	is(DELTA("http_requests_total{method=\"POST\",route=\"/echo\","
	         "code=\"400\"}"),
	   2, "2 bad echoes under code 400");
	is(DELTA("http_requests_total{method=\"GET\",route=\"unmatched\","
	         "code=\"404\"}"),
	   5, "unknown paths share route=\"unmatched\"");
	ok(strstr(after, "/nope") == NULL, "raw paths never become labels");
	is(DELTA("http_requests_total{method=\"DELETE\",route=\"/health\","
	         "code=\"405\"}"),
	   1, "a 405 is counted on its route");
	is(DELTA("http_requests_total{method=\"other\",route=\"/health\","
	         "code=\"405\"}"),
	   2, "odd methods count as method=\"other\"");
	is(DELTA("http_request_duration_seconds_count{method=\"GET\","
	         "route=\"/health\"}"),
	   7, "histogram _count rose by 7 as well");
	is(DELTA("http_request_duration_seconds_bucket{method=\"GET\","
	         "route=\"/health\",le=\"+Inf\"}"),
	   7, "and its +Inf bucket");
	ok(DELTA("http_request_duration_seconds_sum{method=\"GET\","
	         "route=\"/health\"}") > 0,
	   "and its _sum");
	is(sample(after, "http_request_duration_seconds_count{method=\"POST\","
	                 "route=\"/echo\"}"),
	   sample(after, "http_requests_total{method=\"POST\","
	                 "route=\"/echo\",code=\"200\"}") +
	       sample(after, "http_requests_total{method=\"POST\","
	                     "route=\"/echo\",code=\"400\"}"),
	   "_count equals the counters summed over codes");
	ok(sample(after, "http_request_duration_seconds_bucket{method=\"GET\","
	                 "route=\"/health\",le=\"0.0001\"}") <=
	       sample(after, "http_request_duration_seconds_bucket{method="
	                     "\"GET\",route=\"/health\",le=\"10\"}"),
	   "buckets are cumulative");
	is(sample(after, "http_requests_in_flight"), 1,
	   "in flight: the scrape itself");
	ok(sample(after, "microd_connections") >= 1, "open connections >= 1");
	is(sample(after, "microd_ready"), 1, "microd_ready 1");
	is(sample(after, "microd_log_lines_dropped_total"), 0,
	   "microd_log_lines_dropped_total 0 while stderr is read");
	ok(sample(after, "process_resident_memory_bytes") > 100000,
	   "process_resident_memory_bytes");
	ok(sample(after, "process_virtual_memory_bytes") >
	       sample(after, "process_resident_memory_bytes"),
	   "process_virtual_memory_bytes");
	ok(sample(after, "process_open_fds") >= 3, "process_open_fds");
	ok(sample(after, "process_max_fds") >= 64, "process_max_fds");
	ok(sample(after, "process_cpu_seconds_total") >= 0,
	   "process_cpu_seconds_total");
	ok(abs((int)(sample(after, "process_start_time_seconds") -
	             (double)time(NULL))) < 120,
	   "process_start_time_seconds is about now");
	ok(strstr(after, "microd_build_info{version=\"") != NULL,
	   "microd_build_info");
	{
		struct http_result r;
		char *text;

		kill(m.pid, SIGTERM);
		ok(microd_wait_log(&m, "ready -> draining", 5000),
		   "SIGTERM starts the drain");
		r = http_get(m.base, "/metrics");
		text = r.body;
		ok(r.status == 200 && sample(text, "microd_ready") == 0,
		   "microd_ready 0 once the drain starts (still scraped during "
		   "--drain-delay)");
		http_result_free(&r);
	}
out:
	free(before);
	free(after);
	microd_wait_exit(&m, 10000);
	microd_cleanup(&m);
}

/* Lines of the log holding needle; each must parse as a JSON object. */
static int
json_lines_with(const struct microd *m, const char *needle, json_t **last)
{
	char *log = microd_log(m), *line, *save = NULL;
	int n = 0;

	*last = NULL;
	for (line = log != NULL ? strtok_r(log, "\n", &save) : NULL;
	     line != NULL; line = strtok_r(NULL, "\n", &save)) {
		json_t *j;

		if (strstr(line, needle) == NULL)
			continue;
		n++;
		j = json_loads(line, 0, NULL);
		if (j == NULL) {
			diag("not JSON: %s", line);
			n = -1000;
			continue;
		}
		json_decref(*last);
		*last = j;
	}
	free(log);
	return n;
}

static void
test_access_log(void)
{
	static const char *const args[] = {"--log-format", "json", NULL};
	static const char hostile[] =
	    "GET /in\"ject\\ed\xff%0D{\"x\":1} HTTP/1.1\r\nHost: x\r\n"
	    "User-Agent: bad\"agent\\ \xff\xfe \x01 \x7f \xc2\x9b \xc2\xa0 "
	    "end\r\n"
	    "X-Request-Id: hostile-1\r\nConnection: close\r\n\r\n";
	static const char *const fields[] = {
	    "ts",     "level", "msg",         "method", "path",      "route",
	    "status", "bytes", "duration_ms", "remote", "request_id"};
	struct microd m;
	json_t *j;
	char buf[4096], *log, *line;
	int fd, n, all = 1;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --log-format json starts");
		return;
	}
	{
		struct http_opts o = {.method = "POST",
		                      .content_type = "application/json",
		                      .body = "[1]",
		                      .body_len = 3};
		struct http_result r = http_do(m.base, "/echo", &o);

		http_result_free(&r);
	}
	ok(microd_wait_log(&m, "\"route\":\"/echo\"", 2000),
	   "an access line for POST /echo");
	n = json_lines_with(&m, "\"route\":\"/echo\"", &j);
	is(n, 1, "exactly one line, and it is JSON");
	for (size_t i = 0; j != NULL && i < sizeof(fields) / sizeof(*fields);
	     i++)
		all &= json_object_get(j, fields[i]) != NULL;
	ok(j != NULL && all, "with every field");
	ok(j != NULL && json_object_get(j, "user_agent") == NULL,
	   "and no user_agent: libcurl sent none (microd.8, LOGGING: \"when "
	   "sent\")");
	is_str(json_string_value(json_object_get(j, "msg")), "request",
	       "msg is request");
	is(json_integer_value(json_object_get(j, "status")), 200, "status");
	is(json_integer_value(json_object_get(j, "bytes")), 4,
	   "bytes is the body size");
	is_str(json_string_value(json_object_get(j, "remote")), "127.0.0.1",
	       "remote");
	ok(json_is_number(json_object_get(j, "duration_ms")),
	   "duration_ms is a number");
	ok(strlen(json_string_value(json_object_get(j, "ts"))) == 24 &&
	       json_string_value(json_object_get(j, "ts"))[23] == 'Z',
	   "ts is RFC 3339 UTC with milliseconds");
	json_decref(j);

	fd = raw_connect(m.port);
	raw_send(fd, hostile, sizeof(hostile) - 1);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	ok(strncmp(buf, "HTTP/1.1 400", 12) == 0,
	   "the hostile request: 400 (a control byte in its path)");
	ok(microd_wait_log(&m, "hostile-1", 2000), "and it is logged");
	n = json_lines_with(&m, "hostile-1", &j);
	is(n, 1, "as exactly one line, valid JSON");
	is_str(j != NULL ? json_string_value(json_object_get(j, "path")) : NULL,
	       "/in\"ject\\ed\xef\xbf\xbd%0D{\"x\":1}",
	       "the path is logged as sent: quote and backslash escaped, the "
	       "invalid byte as U+FFFD, %%0D not decoded");
	ok(j != NULL &&
	       strstr(json_string_value(json_object_get(j, "user_agent")),
	              "bad\"agent\\") != NULL,
	   "the User-Agent keeps its quote and backslash, escaped");
	log = microd_log(&m);
	line = log != NULL ? strstr(log, "hostile-1") : NULL;
	ok(line != NULL &&
	       strstr(log, "\\u0001 \\u007f \\u009b \xc2\xa0 end") &&
	       strchr(log, 0x7f) == NULL && strstr(log, "\xc2\x9b") == NULL,
	   "DEL and C1 controls (U+009B, CSI) are escaped like C0, U+00A0 "
	   "is kept");
	free(log);
	json_decref(j);
	kill(m.pid, SIGTERM);
	microd_wait_exit(&m, 10000);
	microd_cleanup(&m);
}

static void
test_text_log(void)
{
	static const char *const args[] = {"--log-format", "text", NULL};
	static const char req[] =
	    "GET /nope\"x HTTP/1.1\r\nHost: x\r\n"
	    "User-Agent: a b\r\nConnection: close\r\n\r\n";
	struct microd m;
	char *log, *line, buf[1024];
	int fd;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --log-format text starts");
		return;
	}
	fd = raw_connect(m.port);
	raw_send(fd, req, sizeof(req) - 1);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	microd_wait_log(&m, "msg=request", 2000);
	log = microd_log(&m);
	line = log != NULL ? strstr(log, "msg=request") : NULL;
	ok(line != NULL && strstr(log, "ts=") != NULL &&
	       strstr(log, "level=info") != NULL,
	   "text lines are logfmt: ts=... level=... msg=...");
	ok(line != NULL && strstr(line, "path=\"/nope\\\"x\"") != NULL &&
	       strstr(line, "user_agent=\"a b\"") != NULL &&
	       strstr(line, " status=404 ") != NULL,
	   "values with spaces or quotes are quoted and escaped");
	free(log);
	kill(m.pid, SIGTERM);
	microd_wait_exit(&m, 10000);
	microd_cleanup(&m);
}

static struct http_result
get_with_id(const struct microd *m, const char *path, const char *id)
{
	char req[512], resp[4096];
	struct http_result r = {0};
	int fd = raw_connect(m->port);
	char *body, *hdr_end;

	snprintf(req, sizeof(req),
	         "GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
	         "Connection: close\r\n\r\n",
	         path, id);
	raw_send(fd, req, strlen(req));
	raw_recv(fd, resp, sizeof(resp), 5000);
	close(fd);
	r.status = strtol(resp + 9, NULL, 10);
	hdr_end = strstr(resp, "\r\n\r\n");
	body = hdr_end != NULL ? hdr_end + 4 : resp + strlen(resp);
	if (hdr_end != NULL)
		*hdr_end = '\0';
	r.headers = strdup(resp);
	r.body = strdup(body);
	r.json = json_loads(body, 0, NULL);
	return r;
}

static int
is_hex32(const char *s)
{
	return s != NULL && strlen(s) == 32 &&
	       strspn(s, "0123456789abcdef") == 32;
}

static void
test_request_ids(void)
{
	static const char *const args[] = {"--log-format", "json", NULL};
	char long_id[200], buf[256];
	struct microd m;
	struct http_result r;
	json_t *j;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	r = get_with_id(&m, "/missing", "order-42.a:b_c-D");
	is_str(http_header(&r, "X-Request-Id", buf, sizeof(buf)),
	       "order-42.a:b_c-D", "a valid X-Request-Id is kept");
	is_str(json_string_value(json_object_get(r.json, "request_id")),
	       "order-42.a:b_c-D", "and is the problem's request_id");
	http_result_free(&r);
	ok(microd_wait_log(&m, "\"request_id\":\"order-42.a:b_c-D\"", 2000),
	   "and is logged");

	r = get_with_id(&m, "/missing", "has space");
	ok(is_hex32(http_header(&r, "X-Request-Id", buf, sizeof(buf))),
	   "an id with a space is replaced by 32 hex digits: %s", buf);
	is_str(json_string_value(json_object_get(r.json, "request_id")), buf,
	       "the replacement is in the problem too");
	http_result_free(&r);

	memset(long_id, 'a', 129);
	long_id[129] = '\0';
	r = get_with_id(&m, "/health", long_id);
	ok(is_hex32(http_header(&r, "X-Request-Id", buf, sizeof(buf))),
	   "a 129-character id is replaced");
	http_result_free(&r);
	long_id[128] = '\0';
	r = get_with_id(&m, "/health", long_id);
	is_str(http_header(&r, "X-Request-Id", buf, sizeof(buf)), long_id,
	       "a 128-character id is kept");
	http_result_free(&r);

	r = http_get(m.base, "/health");
	ok(is_hex32(http_header(&r, "X-Request-Id", buf, sizeof(buf))),
	   "without one, an id is made");
	http_result_free(&r);

	/* Probes: quiet when fine, logged when not. */
	r = get_with_id(&m, "/health", "probe-quiet");
	http_result_free(&r);
	r = get_with_id(&m, "/ready", "probe-quiet");
	http_result_free(&r);
	r = get_with_id(&m, "/version", "after-probes");
	http_result_free(&r);
	microd_wait_log(&m, "after-probes", 2000);
	is(json_lines_with(&m, "probe-quiet", &j), 0,
	   "successful /health and /ready are not access-logged");
	json_decref(j);
	kill(m.pid, SIGTERM);
	microd_wait_exit(&m, 10000);
	microd_cleanup(&m);
}

static void
test_probe_logging(void)
{
	static const char *const args[] = {"--log-probes", "--drain-delay", "2",
	                                   NULL};
	struct microd m;
	struct http_result r;
	json_t *j;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --log-probes starts");
		return;
	}
	r = get_with_id(&m, "/health", "probe-loud");
	http_result_free(&r);
	ok(microd_wait_log(&m, "probe-loud", 2000),
	   "--log-probes logs successful probes");
	kill(m.pid, SIGTERM);
	microd_wait_log(&m, "ready -> draining", 2000);
	r = get_with_id(&m, "/ready", "probe-failing");
	is(r.status, 503, "/ready fails during the drain");
	http_result_free(&r);
	ok(microd_wait_log(&m, "probe-failing", 2000),
	   "a failed probe is logged");
	is(json_lines_with(&m, "ready -> draining", &j), 1,
	   "the state change is logged once");
	json_decref(j);
	microd_wait_exit(&m, 15000);
	microd_cleanup(&m);
}

static void
test_version(void)
{
	static const char *const ver[] = {"--version", NULL};
	struct microd m;
	struct http_result r;
	char out[256], want[256];
	const char *v, *c;

	if (microd_start(&m, NULL, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	r = http_get(m.base, "/version");
	is(r.status, 200, "GET /version is 200");
	is_str(json_string_value(json_object_get(r.json, "name")), "microd",
	       "name is microd");
	v = json_string_value(json_object_get(r.json, "version"));
	c = json_string_value(json_object_get(r.json, "commit"));
	microd_run(ver, NULL, out, sizeof(out));
	snprintf(want, sizeof(want), "microd %s (commit %s)\n",
	         v != NULL ? v : "?", c != NULL ? c : "?");
	is_str(out, want, "version and commit match microd --version");
	ok(c != NULL && strlen(c) > 0, "commit is set: %s", c);
	v = json_string_value(json_object_get(r.json, "libmicrohttpd"));
	ok(v != NULL && strchr(v, '.') != NULL,
	   "libmicrohttpd's run-time version: %s", v);
	v = json_string_value(json_object_get(r.json, "jansson"));
	ok(v != NULL && strchr(v, '.') != NULL,
	   "jansson's run-time version: %s", v);
	snprintf(want, sizeof(want),
	         "microd_build_info{version=\"%s\",commit=\"%s\"} 1",
	         json_string_value(json_object_get(r.json, "version")),
	         c != NULL ? c : "?");
	http_result_free(&r);
	r = http_get(m.base, "/metrics");
	ok(strstr(r.body, want) != NULL, "%s is in /metrics", want);
	http_result_free(&r);
	kill(m.pid, SIGTERM);
	microd_wait_exit(&m, 10000);
	microd_cleanup(&m);
}

/* The start-up lines say what each worker really gets. */
static void
test_limits_log(void)
{
	static const char *const uneven[] = {"--threads", "3",
	                                     "--connection-limit", "10", NULL};
	static const char *const clamped[] = {"--threads", "16",
	                                      "--connection-limit", "4", NULL};
	struct microd m;

	if (microd_start(&m, uneven, NULL) == 0) {
		ok(microd_wait_log(
		       &m, "limits: 10 connections over all threads", 2000),
		   "10 connections over 3 threads: the limit is over all of "
		   "them");
		kill(m.pid, SIGTERM);
		microd_wait_exit(&m, 10000);
		microd_cleanup(&m);
	} else {
		ok(0, "microd --threads 3 --connection-limit 10 starts");
	}
	if (microd_start(&m, clamped, NULL) == 0) {
		ok(microd_wait_log(
		       &m,
		       "16 threads asked for is more than the connection "
		       "limit 4: more threads than connections cannot all "
		       "be busy; running 4 threads",
		       2000) &&
		       microd_wait_log(&m, ": 4 threads (", 2000) &&
		       microd_wait_log(&m, "limits: 4 connections", 2000),
		   "16 threads with a limit of 4: warned, and 4 threads run");
		kill(m.pid, SIGTERM);
		microd_wait_exit(&m, 10000);
		microd_cleanup(&m);
	} else {
		ok(0, "microd --threads 16 --connection-limit 4 starts");
	}
}

int
main(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
	test_metrics();
	test_access_log();
	test_limits_log();
	test_text_log();
	test_request_ids();
	test_probe_logging();
	test_version();
	curl_global_cleanup();
	return done_testing();
}
