/* SPDX-License-Identifier: MIT */
/* probe.c -- `microd probe`: one GET with a deadline, for health checks */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "resources.h"

/* Never 2: Docker reserves that exit status of a HEALTHCHECK. */
enum { PROBE_OK = 0, PROBE_FAIL = 1 };

#define MAX_ARGS 64

struct target {
	char host[256];
	char port[8];
	char path[1024];
};

static void
usage(FILE *out)
{
	fputs(
	    "Usage: microd probe [--url URL] [--timeout SECONDS] "
	    "[server options]\n"
	    "Sends one GET and exits 0 for a 2xx or 3xx answer, 1 for "
	    "anything\n"
	    "else (another status, a refused connection, a timeout), with "
	    "one\n"
	    "line on stderr saying why. For Docker HEALTHCHECK and "
	    "Kubernetes\n"
	    "exec probes in images without curl.\n"
	    "\n"
	    "  --url URL          http://HOST[:PORT]/PATH (default: the "
	    "server's\n"
	    "                     own --bind/--port and environment, with "
	    "0.0.0.0\n"
	    "                     and :: mapped to loopback, and /livez)\n"
	    "  --timeout SECONDS  for the whole exchange (default 1)\n"
	    "  --port, --bind     as for the server (flag, else MICROD_PORT,\n"
	    "                     PORT, MICROD_BIND); other server options "
	    "are\n"
	    "                     accepted and not read\n"
	    "\n"
	    "With no --url and no server options, when process 1 is the "
	    "microd\n"
	    "server (as in its container), its own --port and --bind are "
	    "used.\n"
	    "With --url nothing of the server's configuration is read.\n",
	    out);
}

/* http://host[:port]/path, host may be [v6]. 0 or -1. */
static int
parse_url(const char *url, struct target *t)
{
	const char *p, *host, *host_end, *path;
	size_t hl;

	if (strncmp(url, "http://", 7) != 0)
		return -1;
	host = url + 7;
	path = strchr(host, '/');
	if (path == NULL)
		path = host + strlen(host);
	if (*host == '[') {
		host_end = memchr(host, ']', (size_t)(path - host));
		if (host_end == NULL)
			return -1;
		host++;
		p = host_end + 1;
	} else {
		host_end = memchr(host, ':', (size_t)(path - host));
		if (host_end == NULL)
			host_end = path;
		p = host_end;
	}
	hl = (size_t)(host_end - host);
	if (hl == 0 || hl >= sizeof(t->host))
		return -1;
	memcpy(t->host, host, hl);
	t->host[hl] = '\0';
	if (*p == ':') {
		size_t pl = (size_t)(path - p - 1);

		if (pl == 0 || pl >= sizeof(t->port) ||
		    strspn(p + 1, "0123456789") < pl)
			return -1;
		memcpy(t->port, p + 1, pl);
		t->port[pl] = '\0';
	} else if (p == path) {
		snprintf(t->port, sizeof(t->port), "80");
	} else {
		return -1;
	}
	snprintf(t->path, sizeof(t->path), "%s", *path != '\0' ? path : "/");
	return 0;
}

static void
default_target(const struct config *cfg, struct target *t)
{
	const char *host = cfg->bind;

	if (strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->port, sizeof(t->port), "%u", cfg->port);
	snprintf(t->path, sizeof(t->path), "/livez");
}

/*
 * The server's argv when process 1 is the microd server (a container's
 * entrypoint), else 0. buf holds the strings.
 */
static int
server_argv(char *buf, size_t len, char **argv, int max)
{
	int n = resources_read_text("/proc/1/cmdline", buf, len), argc = 0;
	const char *base;

	if (n <= 0)
		return 0; /* unreadable, or too long to be sure of */
	for (char *p = buf; p < buf + n && argc < max - 1; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;
	base = strrchr(argv[0], '/');
	base = base != NULL ? base + 1 : argv[0];
	if (strcmp(base, "microd") != 0 ||
	    (argc > 1 && strcmp(argv[1], "probe") == 0))
		return 0;
	return argc;
}

/* Waits for events on fd until the deadline. 1 ready, 0 timed out. */
static int
wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd = {fd, events, 0};
	long long left;
	int n;

	do {
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, (int)left);
	} while (n < 0 && errno == EINTR);
	return n > 0;
}

static int
connect_by(const struct addrinfo *ai, long long deadline, char *why, size_t wl)
{
	int fd, err = 0;
	socklen_t len = sizeof(err);

	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0) {
		snprintf(why, wl, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			snprintf(why, wl, "connect: %s", strerror(errno));
			goto fail;
		}
		if (!wait_fd(fd, POLLOUT, deadline)) {
			snprintf(why, wl, "connect: timed out");
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
		    err != 0) {
			snprintf(why, wl, "connect: %s", strerror(err));
			goto fail;
		}
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* One GET; returns the status code, or -1 with why filled in. */
static int
probe_once(const struct target *t, unsigned int timeout_ms, char *why,
           size_t wl)
{
	struct addrinfo hints = {0}, *res = NULL;
	long long deadline = now_ms() + timeout_ms;
	char req[1536], resp[512];
	size_t got = 0, sent = 0;
	int fd = -1, status = -1, rc, reqlen;

	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(t->host, t->port, &hints, &res);
	if (rc != 0) {
		snprintf(why, wl, "%.64s: %s", t->host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
		fd = connect_by(ai, deadline, why, wl);
	freeaddrinfo(res);
	if (fd < 0)
		return -1;

	reqlen =
	    snprintf(req, sizeof(req),
	             "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
	             "User-Agent: microd-probe\r\nConnection: close\r\n\r\n",
	             t->path, strchr(t->host, ':') != NULL ? "[" : "", t->host,
	             strchr(t->host, ':') != NULL ? "]" : "", t->port);
	if (reqlen < 0 || (size_t)reqlen >= sizeof(req)) {
		snprintf(why, wl, "URL too long");
		goto out;
	}
	while (sent < (size_t)reqlen) {
		ssize_t n;

		if (!wait_fd(fd, POLLOUT, deadline)) {
			snprintf(why, wl, "send: timed out");
			goto out;
		}
		n = send(fd, req + sent, (size_t)reqlen - sent, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(why, wl, "send: %s", strerror(errno));
			goto out;
		}
		if (n > 0)
			sent += (size_t)n;
	}
	/* The status line is all a probe needs. */
	while (memchr(resp, '\n', got) == NULL && got < sizeof(resp) - 1) {
		ssize_t n;

		if (!wait_fd(fd, POLLIN, deadline)) {
			snprintf(why, wl, "no answer within %u ms", timeout_ms);
			goto out;
		}
		n = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (n == 0)
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(why, wl, "recv: %s", strerror(errno));
			goto out;
		}
		if (n > 0)
			got += (size_t)n;
	}
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 100) {
		snprintf(why, wl, "not an HTTP answer");
		status = -1;
	}
out:
	close(fd);
	return status;
}

int
probe_main(int argc, char **argv)
{
	char *rest[MAX_ARGS];
	const char *url = NULL, *a = NULL;
	unsigned int timeout_ms = 1000;
	struct config cfg;
	struct target t;
	char err[256], why[256] = "";
	int n = 0, status;

	rest[n++] = argv[0];
	for (int i = 1; i < argc; i++) {
		a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return PROBE_OK;
		} else if ((strcmp(a, "--url") == 0 ||
		            strcmp(a, "--timeout") == 0) &&
		           i + 1 == argc) {
			fprintf(stderr,
			        "microd probe: %s: missing value (see microd "
			        "probe --help)\n",
			        a);
			return PROBE_FAIL;
		} else if (strcmp(a, "--url") == 0) {
			url = argv[++i];
		} else if (strncmp(a, "--url=", 6) == 0) {
			url = a + 6;
		} else if (strcmp(a, "--timeout") == 0) {
			a = argv[++i];
			if (config_parse_seconds(a, 3600, &timeout_ms) != 0 ||
			    timeout_ms == 0)
				goto bad_timeout;
		} else if (strncmp(a, "--timeout=", 10) == 0) {
			a += 10;
			if (config_parse_seconds(a, 3600, &timeout_ms) != 0 ||
			    timeout_ms == 0)
				goto bad_timeout;
		} else if (n < MAX_ARGS - 1) {
			rest[n++] = argv[i];
		}
	}
	rest[n] = NULL;
	if (url != NULL) {
		if (parse_url(url, &t) != 0) {
			fprintf(
			    stderr,
			    "microd probe: --url: invalid value '%s' (expected "
			    "http://HOST[:PORT]/PATH)\n",
			    url);
			return PROBE_FAIL;
		}
	} else {
		char cmdline[16384], *pid1[MAX_ARGS];
		int pid1_argc = n == 1 ? server_argv(cmdline, sizeof(cmdline),
		                                     pid1, MAX_ARGS)
		                       : 0;

		if (config_parse_address(&cfg, pid1_argc > 0 ? pid1_argc : n,
		                         pid1_argc > 0 ? pid1 : rest, err,
		                         sizeof(err)) != CONFIG_RUN) {
			fprintf(stderr, "microd probe: %s%s\n",
			        pid1_argc > 0 ? "process 1's " : "",
			        err[0] != '\0' ? err
			                       : "see microd probe --help");
			return PROBE_FAIL;
		}
		default_target(&cfg, &t);
	}
	status = probe_once(&t, timeout_ms, why, sizeof(why));
	if (status >= 200 && status <= 399)
		return PROBE_OK;
	if (status > 0)
		snprintf(why, sizeof(why), "status %d", status);
	fprintf(stderr, "microd probe: http://%s%s%s:%s%s: %s\n",
	        strchr(t.host, ':') != NULL ? "[" : "", t.host,
	        strchr(t.host, ':') != NULL ? "]" : "", t.port, t.path, why);
	return PROBE_FAIL;
bad_timeout:
	fprintf(stderr,
	        "microd probe: --timeout: invalid value '%s' (expected seconds "
	        "above 0, at most 3600, e.g. 1 or 0.5)\n",
	        a);
	return PROBE_FAIL;
}
