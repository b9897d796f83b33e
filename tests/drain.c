/* SPDX-License-Identifier: MIT */
/* drain.c -- readiness, the drain under load, and `microd probe` */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "harness.h"

static int
count_in_log(const struct microd *m, const char *needle)
{
	char cmd[256], out[64];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "grep -c -F -- '%s' %s", needle,
	         m->log_path);
	p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	if (fgets(out, sizeof(out), p) != NULL)
		n = atoi(out);
	pclose(p);
	return n;
}

static void
test_readiness(void)
{
	static const char *const args[] = {"--drain-delay", "1.5", NULL};
	struct http_opts head = {.head = 1};
	struct microd m;
	struct http_result r;
	long long t0, flipped = -1, delay_end, deadline;
	int health_ok = 1, status;
	char buf[64];

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --drain-delay 1.5 starts");
		return;
	}
	/* "listening on" is logged before the readiness checks start and
	 * microd is marked ready; till then /ready is 503 "starting", for a
	 * while under TSan: poll. */
	deadline = now_ms() + 5000;
	for (;;) {
		r = http_get(m.base, "/ready");
		if (r.status == 200 || now_ms() >= deadline)
			break;
		http_result_free(&r);
		pause_ms(5);
	}
	is(r.status, 200, "GET /ready is 200 once listening (within 5 s)");
	is_str(r.body, "{\"status\":\"ready\"}\n",
	       "body {\"status\":\"ready\"}");
	is_str(http_header(&r, "Cache-Control", buf, sizeof(buf)), "no-store",
	       "/ready has Cache-Control: no-store");
	ok(r.body_len < 10240, "the probe answer is well under 10 KiB");
	http_result_free(&r);
	r = http_do(m.base, "/ready", &head);
	is(r.status, 200, "HEAD /ready is 200");
	http_result_free(&r);

	t0 = now_ms();
	kill(m.pid, SIGTERM);
	while (now_ms() - t0 < 1000) {
		r = http_get(m.base, "/ready");
		if (r.status == 503) {
			flipped = now_ms() - t0;
			is_str(r.body, "{\"status\":\"draining\"}\n",
			       "503 body {\"status\":\"draining\"}");
			is_str(
			    http_header(&r, "Cache-Control", buf, sizeof(buf)),
			    "no-store", "503 has Cache-Control: no-store");
			http_result_free(&r);
			break;
		}
		http_result_free(&r);
	}
	ok(flipped >= 0 && flipped <= 100,
	   "/ready turned 503 %lld ms after SIGTERM (<= 100)", flipped);
	/* Within the delay, everything else is served as before. */
	delay_end = t0 + 1300;
	for (int i = 0; now_ms() < delay_end; i++) {
		r = http_get(m.base, "/health");
		health_ok &= r.status == 200;
		http_result_free(&r);
	}
	ok(health_ok, "/health stays 200, on new connections, during the "
	              "delay");
	status = microd_wait_exit(&m, 1500 + 10000);
	ok(status == 0, "exits 0 after delay + drain");
	ok(now_ms() - t0 >= 1500, "not before the delay (%lld ms)",
	   now_ms() - t0);
	is(count_in_log(&m, "state: ready -> draining"), 1,
	   "ready -> draining logged once");
	is(count_in_log(&m, "state: draining -> stopping"), 1,
	   "draining -> stopping logged once");
	is(count_in_log(&m, "state: stopping -> stopped"), 1,
	   "stopping -> stopped logged once");
	microd_cleanup(&m);
}

struct load {
	const char *base;
	atomic_int stop;
	atomic_long ok, failed, closed;
};

/*
 * One keep-alive client, like a load balancer's connection: it sends until
 * the server says Connection: close, and then opens no new connection (a
 * balancer has taken the instance out of rotation by then: /ready is 503).
 */
static void *
load_client(void *arg)
{
	struct load *l = arg;
	void *h = http_handle_new();
	struct http_opts get = {.curl = h};
	struct http_opts echo = {.curl = h,
	                         .content_type = "application/json",
	                         .body = "{\"n\":1}",
	                         .body_len = 7};
	long long deadline = now_ms() + 20000;
	char buf[32];

	for (int i = 0; !atomic_load(&l->stop) && now_ms() < deadline; i++) {
		struct http_result r =
		    http_do(l->base, i % 3 == 2 ? "/echo" : "/health",
		            i % 3 == 2 ? &echo : &get);
		int closing =
		    http_header(&r, "Connection", buf, sizeof(buf)) != NULL &&
		    strcmp(buf, "close") == 0;

		if (r.curl_error != 0 || r.status != 200) {
			atomic_fetch_add(&l->failed, 1);
			diag("request failed: curl %d, status %ld",
			     r.curl_error, r.status);
		} else {
			atomic_fetch_add(&l->ok, 1);
		}
		http_result_free(&r);
		if (closing) {
			atomic_fetch_add(&l->closed, 1);
			break;
		}
	}
	http_handle_free(h);
	return NULL;
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
	if (!raw_recv_until(fd, buf, sizeof(buf), "100 Continue\r\n\r\n",
	                    5000)) {
		close(fd);
		return -1;
	}
	raw_send(fd, "{\"slow\":", 8);
	return fd;
}

static void
test_drain_under_load(void)
{
	enum { CLIENTS = 8 };
	static const char *const args[] = {"--drain-delay",
	                                   "0.5",
	                                   "--shutdown-timeout",
	                                   "5",
	                                   "--threads",
	                                   "2",
	                                   NULL};
	struct microd m;
	struct load l = {0};
	pthread_t th[CLIENTS];
	long long t0;
	char buf[2048];
	int fd, status;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts for the load test");
		return;
	}
	l.base = m.base;
	for (int i = 0; i < CLIENTS; i++)
		pthread_create(&th[i], NULL, load_client, &l);
	t0 = now_ms() + 10000;
	while (atomic_load(&l.ok) < 200 && now_ms() < t0)
		usleep(1000); /* until a load is flowing */
	fd = start_slow_echo(&m);
	ok(fd >= 0, "a slow upload is mid-way when SIGTERM arrives");
	t0 = now_ms();
	kill(m.pid, SIGTERM);
	ok(microd_wait_log(&m, "draining -> stopping", 5000),
	   "the drain reaches 'stopping'");
	raw_send(fd, "\"done\"}\n", 8);
	raw_recv(fd, buf, sizeof(buf), 5000);
	close(fd);
	ok(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
	       strstr(buf, "{\"slow\":\"done\"}\n") != NULL,
	   "the slow upload completes with its echo");
	status = microd_wait_exit(&m, 500 + 5000 + 1000);
	ok(status == 0, "exits 0 within delay + timeout (%lld ms)",
	   now_ms() - t0);
	atomic_store(&l.stop, 1);
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(th[i], NULL);
	diag("%ld requests answered, %ld failed, %ld clients told to close",
	     atomic_load(&l.ok), atomic_load(&l.failed),
	     atomic_load(&l.closed));
	is(atomic_load(&l.failed), 0,
	   "zero failed requests (no reset, no 5xx)");
	is(atomic_load(&l.closed), CLIENTS,
	   "every keep-alive client was told Connection: close");
	microd_cleanup(&m);
}

/*
 * A client that connected before SIGTERM but sends its first request only
 * after the drain has begun is still answered; one that never sends holds
 * the drain for about a second, not the whole shutdown timeout.
 */
static void
test_first_request_in_drain(void)
{
	static const char *const args[] = {"--shutdown-timeout", "8", NULL};
	static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	struct microd m;
	char buf[1024] = "";
	long long t0, took;
	int late, silent, accepted = 0, status;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts for the first-request test");
		return;
	}
	late = raw_connect(m.port);
	silent = raw_connect(m.port);
	/* The scrape's own connection is the third. */
	t0 = now_ms() + 5000;
	while (!accepted && now_ms() < t0) {
		struct http_result r = http_get(m.base, "/metrics");

		accepted = r.body != NULL &&
		           strstr(r.body, "\nmicrod_connections 3\n") != NULL;
		http_result_free(&r);
		if (!accepted)
			pause_ms(5);
	}
	ok(late >= 0 && silent >= 0 && accepted,
	   "two silent connections are open before SIGTERM");
	t0 = now_ms();
	kill(m.pid, SIGTERM);
	ok(microd_wait_log(&m, "draining -> stopping", 5000),
	   "the drain reaches 'stopping'");
	/* Past the 250 ms quiet period, which alone would end the drain. */
	while (now_ms() - t0 < 500)
		pause_ms(10);
	raw_send(late, req, sizeof(req) - 1);
	raw_recv(late, buf, sizeof(buf), 5000);
	ok(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
	       strstr(buf, "Connection: close\r\n") != NULL,
	   "a first request sent 500 ms into the drain gets 200 and "
	   "Connection: close");
	status = microd_wait_exit(&m, 8000);
	took = now_ms() - t0;
	ok(status == 0 && took < 3000,
	   "a connection that never sends holds the drain ~1 s, not the 8 s "
	   "timeout (exit after %lld ms)",
	   took);
	close(late);
	close(silent);
	microd_cleanup(&m);
}

/*
 * An idle keep-alive connection gets the whole quiet period after the pool
 * stops accepting, also after a drain delay: a request its client sends then
 * is still answered.
 */
static void
test_drain_grace(void)
{
	static const char *const args[] = {"--drain-delay", "1", NULL};
	static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	struct microd m;
	char buf[1024] = "";
	long long t0;
	int fd, status;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd --drain-delay 1 starts");
		return;
	}
	fd = raw_connect(m.port);
	raw_send(fd, req, sizeof(req) - 1);
	ok(raw_recv_until(fd, buf, sizeof(buf), "{\"status\":\"ok\"}", 5000),
	   "a keep-alive connection is served, then idle");
	kill(m.pid, SIGTERM);
	ok(microd_wait_log(&m, "draining -> stopping", 5000),
	   "after the 1 s delay the drain reaches 'stopping'");
	t0 = now_ms();
	while (now_ms() - t0 < 100)
		pause_ms(10);
	buf[0] = '\0';
	raw_send(fd, req, sizeof(req) - 1);
	raw_recv(fd, buf, sizeof(buf), 5000);
	ok(strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
	       strstr(buf, "Connection: close\r\n") != NULL,
	   "a request on the idle connection 100 ms into 'stopping' gets 200 "
	   "and Connection: close (the 250 ms quiet period counts from the "
	   "stop of accepting, not from SIGTERM)");
	status = microd_wait_exit(&m, 8000);
	is(status, 0, "and microd exits 0");
	close(fd);
	microd_cleanup(&m);
}

/* A peer that answers every connection with a fixed response, or never. */
struct fake {
	int fd;
	unsigned int port;
	const char *answer; /* NULL: accept and say nothing */
	pthread_t th;
};

static void *
fake_serve(void *arg)
{
	struct fake *f = arg;
	int c;

	while ((c = accept(f->fd, NULL, NULL)) >= 0) {
		char buf[2048];

		if (f->answer != NULL) {
			raw_recv_until(c, buf, sizeof(buf), "\r\n\r\n", 2000);
			raw_send(c, f->answer, strlen(f->answer));
		} else {
			raw_recv(c, buf, sizeof(buf), 3000);
		}
		close(c);
	}
	return NULL;
}

static int
fake_start(struct fake *f, const char *answer)
{
	struct sockaddr_in sin = {0};
	socklen_t len = sizeof(sin);

	f->answer = answer;
	f->fd = socket(AF_INET, SOCK_STREAM, 0);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&sin, len) != 0 ||
	    listen(f->fd, 8) != 0 ||
	    getsockname(f->fd, (struct sockaddr *)&sin, &len) != 0)
		return -1;
	f->port = ntohs(sin.sin_port);
	return pthread_create(&f->th, NULL, fake_serve, f);
}

static void
fake_stop(struct fake *f)
{
	shutdown(f->fd, SHUT_RDWR);
	pthread_join(f->th, NULL);
	close(f->fd);
}

static int
probe(const char *url, const char *timeout, const char *const *env, char *out,
      size_t len)
{
	const char *args[] = {"probe",     "--url", url,
	                      "--timeout", timeout, NULL};

	if (url == NULL)
		args[1] = NULL;
	return microd_run(args, env, out, len);
}

static void
test_probe(void)
{
	static const char *const args[] = {"--drain-delay", "3", NULL};
	struct microd m;
	struct fake f;
	char url[128], out[1024], env_port[32];
	const char *env[] = {env_port, NULL};
	long long t0;
	int st;

	if (microd_start(&m, args, NULL) != 0) {
		ok(0, "microd starts for the probe tests");
		return;
	}
	snprintf(url, sizeof(url), "%s/health", m.base);
	st = probe(url, "1", NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "probe exits 0 against a healthy server");
	snprintf(env_port, sizeof(env_port), "PORT=%u", m.port);
	st = probe(NULL, NULL, env, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "with no --url it follows the server's PORT");
	snprintf(url, sizeof(url), "%s/ready", m.base);
	kill(m.pid, SIGTERM);
	microd_wait_log(&m, "ready -> draining", 5000);
	st = probe(url, "1", NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	   "probe exits 1 against a draining /ready");
	ok(strstr(out, "status 503") != NULL, "saying why: %s", out);
	snprintf(url, sizeof(url), "%s/health", m.base);
	st = probe(url, "1", NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "while /health, the liveness answer, still passes");
	microd_cleanup(&m);

	st = probe(url, "1", NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	   "probe exits 1 against a closed port");
	ok(strstr(out, ": connect to 127.0.0.1:") != NULL &&
	       strstr(out, ": Connection refused") != NULL,
	   "saying why, as the checks do: %s", out);

	if (fake_start(&f, NULL) == 0) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/health",
		         f.port);
		t0 = now_ms();
		st = probe(url, "0.3", NULL, out, sizeof(out));
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
		   "probe exits 1 against a server that never answers");
		ok(now_ms() - t0 >= 300 && now_ms() - t0 < 2000,
		   "after its --timeout of 0.3 s (%lld ms)", now_ms() - t0);
		ok(strstr(out, "GET /health: no answer in 300 ms") != NULL,
		   "saying why, as the checks do: %s", out);
		fake_stop(&f);
	}
	if (fake_start(&f, "HTTP/1.1 500 Internal Server Error\r\n"
	                   "Content-Length: 0\r\n\r\n") == 0) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/", f.port);
		st = probe(url, "1", NULL, out, sizeof(out));
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
		   "probe exits 1 on a 500");
		snprintf(env_port, sizeof(env_port), "PORT=%u", f.port);
		st = probe(NULL, NULL, env, out, sizeof(out));
		snprintf(url, sizeof(url),
		         "http://127.0.0.1:%u/livez: status 500", f.port);
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
		       strstr(out, url) != NULL,
		   "with no --url it asks /livez: %s", out);
		fake_stop(&f);
	}
	if (fake_start(&f, "HTTP/1.1 302 Found\r\nLocation: /x\r\n"
	                   "Content-Length: 0\r\n\r\n") == 0) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/", f.port);
		st = probe(url, "1", NULL, out, sizeof(out));
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		   "probe exits 0 on a 302 (the kubelet's 200-399 rule)");
		fake_stop(&f);
	}
	if (fake_start(&f, "HTTP/1.1 200999\r\nContent-Length: 0\r\n\r\n") ==
	    0) {
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/", f.port);
		st = probe(url, "1", NULL, out, sizeof(out));
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
		       strstr(out, "GET /: malformed status line: HTTP/1.1 "
		                   "200999\n") != NULL,
		   "probe exits 1 on a malformed status line, quoting it: %s",
		   out);
		fake_stop(&f);
	}
	st = probe("ftp://example", "1", NULL, out, sizeof(out));
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	   "a bad --url exits 1, never 2");
}

int
main(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
	test_readiness();
	test_drain_under_load();
	test_first_request_in_drain();
	test_drain_grace();
	test_probe();
	curl_global_cleanup();
	return done_testing();
}
