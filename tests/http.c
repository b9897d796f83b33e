/* SPDX-License-Identifier: MIT */
/* http.c -- integration tests: the real microd binary over real HTTP */
#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"

static const char problem_type[] = "application/problem+json";

/* Asserts a problem-details reply: status, content type, members. */
static void
check_problem(const struct http_result *r, long status, const char *title,
              const char *what)
{
	char buf[256];

	is(r->status, status, "%s: status %ld", what, status);
	is_str(http_header(r, "Content-Type", buf, sizeof(buf)), problem_type,
	       "%s: problem+json content type", what);
	is_str(json_string_value(json_object_get(r->json, "type")),
	       "about:blank", "%s: type about:blank", what);
	is_str(json_string_value(json_object_get(r->json, "title")), title,
	       "%s: title '%s'", what, title);
	is(json_integer_value(json_object_get(r->json, "status")), status,
	   "%s: status member", what);
	ok(json_is_string(json_object_get(r->json, "detail")),
	   "%s: has a detail", what);
}

static struct http_result
post(const struct microd *m, const char *path, const char *type,
     const char *body, size_t len)
{
	struct http_opts o = {
	    .content_type = type, .body = body, .body_len = len};

	return http_do(m->base, path, &o);
}

static void
test_health(const struct microd *m)
{
	struct http_result r = http_get(m->base, "/health");
	struct http_opts head = {.head = 1};
	char buf[256];

	is(r.status, 200, "GET /health is 200");
	is_str(http_header(&r, "Content-Type", buf, sizeof(buf)),
	       "application/json", "GET /health is application/json");
	is_str(http_header(&r, "Cache-Control", buf, sizeof(buf)), "no-store",
	       "GET /health has Cache-Control: no-store");
	is_str(r.body, "{\"status\":\"ok\"}\n",
	       "GET /health body is {\"status\":\"ok\"} and a newline");
	http_result_free(&r);

	r = http_get(m->base, "/health?verbose=1&x");
	is(r.status, 200, "GET /health with a query string is 200");
	is_str(r.body, "{\"status\":\"ok\"}\n", "the query string is ignored");
	http_result_free(&r);

	r = http_do(m->base, "/health", &head);
	is(r.status, 200, "HEAD /health is 200");
	is(r.body_len, 0, "HEAD /health has no body");
	is_str(http_header(&r, "Content-Type", buf, sizeof(buf)),
	       "application/json", "HEAD /health has GET's Content-Type");
	is_str(http_header(&r, "Content-Length", buf, sizeof(buf)), "16",
	       "HEAD /health has GET's Content-Length");
	is_str(http_header(&r, "Cache-Control", buf, sizeof(buf)), "no-store",
	       "HEAD /health has Cache-Control: no-store");
	http_result_free(&r);
}

static void
test_errors(const struct microd *m)
{
	struct http_opts del = {.method = "DELETE"};
	struct http_result r = http_get(m->base, "/nope");
	char buf[256];

	check_problem(&r, 404, "Not Found", "GET /nope");
	is_str(json_string_value(json_object_get(r.json, "detail")),
	       "no route for GET /nope", "404 detail names method and path");
	http_result_free(&r);

	r = http_do(m->base, "/health", &del);
	check_problem(&r, 405, "Method Not Allowed", "DELETE /health");
	is_str(http_header(&r, "Allow", buf, sizeof(buf)), "GET, HEAD",
	       "405 on /health allows GET, HEAD");
	http_result_free(&r);

	r = http_get(m->base, "/echo");
	check_problem(&r, 405, "Method Not Allowed", "GET /echo");
	is_str(http_header(&r, "Allow", buf, sizeof(buf)), "POST",
	       "405 on /echo allows POST");
	http_result_free(&r);

	r = post(m, "/nope", "application/json", "{}", 2);
	check_problem(&r, 404, "Not Found", "POST with a body to /nope");
	http_result_free(&r);
}

static void
test_echo(const struct microd *m)
{
	static const char doc[] =
	    "{\"name\":\"x\",\"list\":[1,2.5,true,null,\"\\u00e9\"],"
	    "\"nested\":{\"a\":{}}}";
	struct http_result r;
	json_t *want;
	char buf[256];

	r = post(m, "/echo", "application/json", doc, strlen(doc));
	is(r.status, 200, "POST /echo with JSON is 200");
	is_str(http_header(&r, "Content-Type", buf, sizeof(buf)),
	       "application/json", "echo answers application/json");
	want = json_loads(doc, 0, NULL);
	ok(r.json != NULL && json_equal(r.json, want),
	   "echo returns the same JSON");
	ok(r.body_len > 0 && r.body[r.body_len - 1] == '\n',
	   "echo body ends with a newline");
	json_decref(want);
	http_result_free(&r);

	r = post(m, "/echo", "Application/JSON; charset=utf-8", "[1]", 3);
	is(r.status, 200, "a JSON type with parameters is accepted");
	is_str(r.body, "[1]\n", "a top-level array echoes");
	http_result_free(&r);

	r = post(m, "/echo", "application/json", "42", 2);
	is_str(r.body, "42\n", "a bare number echoes");
	http_result_free(&r);

	r = post(m, "/echo", "text/plain", "{}", 2);
	check_problem(&r, 415, "Unsupported Media Type", "text/plain body");
	http_result_free(&r);

	r = post(m, "/echo", NULL, "{}", 2);
	check_problem(&r, 415, "Unsupported Media Type", "no Content-Type");
	http_result_free(&r);

	r = post(m, "/echo", "application/jsonx", "{}", 2);
	check_problem(&r, 415, "Unsupported Media Type", "application/jsonx");
	http_result_free(&r);

	r = post(m, "/echo", "application/json", "{\"a\":\n [1,", 11);
	check_problem(&r, 400, "Bad Request", "truncated JSON");
	ok(strstr(json_string_value(json_object_get(r.json, "detail")),
	          "line 2, column") != NULL,
	   "400 detail carries jansson's line and column");
	http_result_free(&r);

	r = post(m, "/echo", "application/json", "", 0);
	check_problem(&r, 400, "Bad Request", "empty body");
	http_result_free(&r);
}

static void
test_keepalive(const struct microd *m)
{
	void *h = http_handle_new();
	struct http_opts o = {.curl = h};
	struct http_opts e = {.curl = h,
	                      .content_type = "application/json",
	                      .body = "{\"k\":1}",
	                      .body_len = 7};
	struct http_result r;
	long total = 0;
	int good = 1;

	for (int i = 0; i < 5; i++) {
		r = http_do(m->base, i == 2 ? "/missing" : "/health", &o);
		total += r.connects;
		good &= r.status == (i == 2 ? 404 : 200);
		http_result_free(&r);
		r = http_do(m->base, "/echo", &e);
		total += r.connects;
		good &= r.status == 200;
		http_result_free(&r);
	}
	ok(good, "ten requests on one handle all answered");
	is(total, 1, "they shared one keep-alive connection (a 404 too)");
	http_handle_free(h);
}

static void
test_pipelining(const struct microd *m)
{
	static const char reqs[] =
	    "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
	    "\r\nContent-Length: 7\r\n\r\n{\"p\":2}"
	    "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[8192];
	int fd = raw_connect(m->port);
	const char *second, *third;

	ok(fd >= 0, "raw connect");
	if (fd < 0)
		return;
	raw_send(fd, reqs, sizeof(reqs) - 1);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	second = strstr(buf + 1, "HTTP/1.1 200");
	third = second != NULL ? strstr(second + 1, "HTTP/1.1 404") : NULL;
	ok(strncmp(buf, "HTTP/1.1 200", 12) == 0 && second != NULL &&
	       third != NULL,
	   "three pipelined requests get three responses, in order");
	ok(second != NULL && strstr(second, "{\"p\":2}\n") != NULL,
	   "the pipelined POST was echoed");
}

static void
test_http10(const struct microd *m)
{
	struct http_opts o = {.http10 = 1};
	struct http_result r = http_do(m->base, "/health", &o);
	char buf[64];
	int fd;

	is(r.status, 200, "HTTP/1.0 GET /health is 200");
	is_str(r.body, "{\"status\":\"ok\"}\n", "HTTP/1.0 body");
	http_result_free(&r);

	fd = raw_connect(m->port);
	raw_send(fd, "GET /health HTTP/1.0\r\n\r\n", 24);
	{
		char resp[2048];

		raw_recv(fd, resp, sizeof(resp), 5000);
		ok(strncmp(resp, "HTTP/1.", 7) == 0 &&
		       strstr(resp, " 200 OK\r\n") != NULL &&
		       strstr(resp, "\r\n\r\n{\"status\":\"ok\"}\n") != NULL,
		   "HTTP/1.0 without Host: full answer, then close");
	}
	close(fd);
	(void)buf;
}

/* A chunked body of total bytes, sent in 64 KiB chunks. */
static int
send_chunked(int fd, size_t total)
{
	static char chunk[65536];
	char head[32];

	memset(chunk, ' ', sizeof(chunk));
	while (total > 0) {
		size_t n = total < sizeof(chunk) ? total : sizeof(chunk);
		int hl = snprintf(head, sizeof(head), "%zx\r\n", n);

		if (raw_send(fd, head, (size_t)hl) != 0 ||
		    raw_send(fd, chunk, n) != 0 || raw_send(fd, "\r\n", 2) != 0)
			return -1;
		total -= n;
	}
	return raw_send(fd, "0\r\n\r\n", 5);
}

static void
test_max_body(void)
{
	static const char *const args[] = {"--max-body", "64k", NULL};
	static const char big_cl[] =
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
	    "\r\nContent-Length: 104857600\r\nExpect: 100-continue\r\n\r\n";
	static const char chunked[] =
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
	    "\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct microd m;
	struct http_result r;
	char buf[4096], *body;
	long before, after;
	int fd, all413 = 1, cut = 1;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --max-body 64k starts");
		return;
	}
	body = malloc(65537);
	memset(body, ' ', 65537);
	body[0] = '[';
	body[65535] = ']';
	r = post(&m, "/echo", "application/json", body, 65536);
	is(r.status, 200, "a body of exactly --max-body is accepted");
	http_result_free(&r);
	r = post(&m, "/echo", "application/json", body, 65537);
	check_problem(&r, 413, "Content Too Large", "max-body + 1 bytes");
	http_result_free(&r);
	free(body);

	fd = raw_connect(m.port);
	raw_send(fd, big_cl, sizeof(big_cl) - 1);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	ok(strncmp(buf, "HTTP/1.1 413 ", 13) == 0,
	   "Content-Length 100 MiB: 413 before any body byte is sent");
	ok(strstr(buf, "100 Continue") == NULL,
	   "and no 100 Continue for a body that will be refused");

	/*
	 * A chunked body over the limit is read on for at most --max-body more
	 * (64 KiB here) for a 413 at its end; one that goes on past that is cut
	 * off. Either way memory must not follow the body.
	 */
	before = microd_rss_kib(&m);
	for (int i = 0; i < 8; i++) {
		fd = raw_connect(m.port);
		raw_send(fd, chunked, sizeof(chunked) - 1);
		send_chunked(fd, (size_t)96 << 10);
		raw_recv(fd, buf, sizeof(buf), 10000);
		close(fd);
		all413 &= strncmp(buf, "HTTP/1.1 413 ", 13) == 0;
	}
	ok(all413, "8 chunked bodies of 96 KiB (limit + 32 KiB) each get 413");
	for (int i = 0; i < 8; i++) {
		fd = raw_connect(m.port);
		raw_send(fd, chunked, sizeof(chunked) - 1);
		cut &= send_chunked(fd, (size_t)16 << 20) != 0;
		close(fd);
	}
	after = microd_rss_kib(&m);
	ok(cut, "8 chunked bodies of 16 MiB are each cut off before their end");
	ok(before > 0 && after - before < 4096,
	   "RSS grew by %ld KiB for 8 refused bodies (< 4 MiB)",
	   after - before);

	r = http_get(m.base, "/health");
	is(r.status, 200, "still healthy after the oversized bodies");
	http_result_free(&r);
	kill(m.pid, SIGTERM);
	is(microd_wait_exit(&m, 10000), 0, "exits 0 on SIGTERM");
	microd_cleanup(&m);
}

/* Starts a POST /echo whose body is half sent; returns the socket. */
static int
start_slow_echo(const struct microd *m)
{
	static const char head[] =
	    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
	    "\r\nContent-Length: 16\r\nExpect: 100-continue\r\n\r\n";
	char buf[512];
	int fd = raw_connect(m->port);

	if (fd < 0)
		return -1;
	raw_send(fd, head, sizeof(head) - 1);
	/* 100 Continue comes after the handler's first call: it is in flight */
	if (!raw_recv_until(fd, buf, sizeof(buf), "100 Continue\r\n\r\n",
	                    5000)) {
		close(fd);
		return -1;
	}
	raw_send(fd, "{\"slow\":", 8);
	return fd;
}

static void
test_sigterm_in_flight(void)
{
	struct microd m;
	char buf[2048];
	int fd, status;

	if (microd_start(&m, NULL, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	fd = start_slow_echo(&m);
	ok(fd >= 0, "a slow upload is in flight");
	kill(m.pid, SIGTERM);
	/* Logged once the pool has stopped accepting. */
	ok(microd_wait_log(&m, "draining -> stopping", 5000),
	   "SIGTERM starts the drain");
	ok(raw_connect(m.port) < 0,
	   "new connections are refused while draining");
	is(microd_wait_exit(&m, 300), -1,
	   "the process waits for the request in flight");
	raw_send(fd, "\"done\"}\n", 8);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	ok(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
	       strstr(buf, "{\"slow\":\"done\"}\n") != NULL,
	   "the in-flight request completes with its echo");
	ok(strstr(buf, "Connection: close\r\n") != NULL,
	   "a reply during the drain carries Connection: close");
	status = microd_wait_exit(&m, 5000);
	ok(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "then exits with status 0");
	microd_cleanup(&m);
}

static void
test_shutdown_timeout(void)
{
	static const char *const args[] = {"--shutdown-timeout", "0.3", NULL};
	struct microd m;
	long long t0;
	int fd, status;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	fd = start_slow_echo(&m);
	t0 = now_ms();
	kill(m.pid, SIGTERM);
	status = microd_wait_exit(&m, 5000);
	ok(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a stuck request is cut after --shutdown-timeout, exit 0");
	ok(now_ms() - t0 >= 300, "not before the timeout (%lld ms)",
	   now_ms() - t0);
	ok(microd_wait_log(&m, "cutting 1 requests", 100), "the cut is logged");
	close(fd);
	microd_cleanup(&m);
}

static void
test_second_signal(void)
{
	struct microd m;
	int fd, status;

	if (microd_start(&m, NULL, NULL) != 0) {
		ok(0, "microd starts");
		return;
	}
	fd = start_slow_echo(&m);
	kill(m.pid, SIGINT);
	ok(microd_wait_log(&m, "draining", 5000), "SIGINT starts the drain");
	kill(m.pid, SIGTERM);
	status = microd_wait_exit(&m, 2000);
	ok(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
	   "a second signal exits at once with status 1");
	close(fd);
	microd_cleanup(&m);
}

static void
test_cli(void)
{
	static const char *const help[] = {"--help", NULL};
	static const char *const version[] = {"--version", NULL};
	static const char *const bad_port[] = {"--port", "http", NULL};
	static const char *const bad_body[] = {"--max-body=12q", NULL};
	static const char *const unknown[] = {"--frobnicate", NULL};
	static const char *const env_bad[] = {"MICROD_PORT=99999", NULL};
	char out[8192];
	int st;

	st = microd_run(help, NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--help exits 0");
	ok(strstr(out, "--max-body") != NULL &&
	       strstr(out, "MICROD_SHUTDOWN_TIMEOUT") != NULL,
	   "--help lists flags and their variables");
	st = microd_run(version, NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	       strncmp(out, "microd ", 7) == 0,
	   "--version prints 'microd VERSION'");

	st = microd_run(bad_port, NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--port http exits 2");
	ok(strstr(out, "--port") && strstr(out, "'http'") &&
	       strstr(out, "0 to 65535"),
	   "the error names flag, value and range: %s", out);
	ok(strchr(out, '\n') == out + strlen(out) - 1, "in one line");

	st = microd_run(bad_body, NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 2 &&
	       strstr(out, "--max-body") != NULL,
	   "--max-body=12q exits 2 naming the flag");
	st = microd_run(unknown, NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 2 &&
	       strstr(out, "--frobnicate") != NULL,
	   "an unknown flag exits 2 naming it");
	st = microd_run(NULL, env_bad, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 2 &&
	       strstr(out, "MICROD_PORT") != NULL,
	   "a bad MICROD_PORT exits 2 naming the variable");
}

static void
test_env_port(void)
{
	static const char *const env[] = {"MICROD_THREADS=3",
	                                  "MICROD_MAX_BODY=1k", NULL};
	struct microd m;
	struct http_result r;
	char big[2000];

	if (microd_start(&m, NULL, env) != 0) {
		ok(0, "microd starts with environment settings");
		return;
	}
	ok(microd_wait_log(&m, "3 threads", 1000),
	   "MICROD_THREADS sets the pool size");
	memset(big, '1', sizeof(big));
	r = post(&m, "/echo", "application/json", big, sizeof(big));
	is(r.status, 413, "MICROD_MAX_BODY=1k refuses 2000 bytes");
	http_result_free(&r);
	kill(m.pid, SIGTERM);
	is(microd_wait_exit(&m, 10000), 0, "exits 0");
	microd_cleanup(&m);
}

static void
test_dual_stack(void)
{
	static const char *const args[] = {"--bind", "::", NULL};
	struct microd m;
	struct http_result r;
	char v6[64];

	if (access("/proc/net/if_inet6", R_OK) != 0) {
		printf("ok %d # skip no IPv6 on this machine\n", ++check_count);
		return;
	}
	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --bind :: starts");
		return;
	}
	ok(microd_wait_log(&m, "listening on [::]:", 100),
	   "the log shows the IPv6 address in brackets");
	r = http_get(m.base, "/health");
	is(r.status, 200, "--bind :: answers on 127.0.0.1 (dual-stack)");
	http_result_free(&r);
	snprintf(v6, sizeof(v6), "http://[::1]:%u", m.port);
	r = http_get(v6, "/health");
	is(r.status, 200, "--bind :: answers on [::1]");
	http_result_free(&r);
	kill(m.pid, SIGTERM);
	is(microd_wait_exit(&m, 10000), 0, "exits 0");
	microd_cleanup(&m);
}

int
main(void)
{
	struct microd m;

	curl_global_init(CURL_GLOBAL_ALL);
	if (microd_start(&m, NULL, NULL) != 0) {
		ok(0, "microd starts and logs its port");
		return done_testing();
	}
	ok(m.port > 0, "microd started on port %u", m.port);
	test_health(&m);
	test_errors(&m);
	test_echo(&m);
	test_keepalive(&m);
	test_pipelining(&m);
	test_http10(&m);
	kill(m.pid, SIGTERM);
	is(microd_wait_exit(&m, 10000), 0, "idle server exits 0 on SIGTERM");
	microd_cleanup(&m);

	test_max_body();
	test_sigterm_in_flight();
	test_shutdown_timeout();
	test_second_signal();
	test_cli();
	test_env_port();
	test_dual_stack();
	curl_global_cleanup();
	return done_testing();
}
