/* SPDX-License-Identifier: MIT */
/* probe.c -- `microd probe`: one GET with a deadline, for health checks */
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "number.h"
#include "resources.h"

/* Never 2: Docker reserves that exit status of a HEALTHCHECK. */
enum { PROBE_OK = 0, PROBE_FAIL = 1 };

#define MAX_ARGS 64

struct target {
	char host[256];
	char port[8];
	char path[1024];
	int tls;            /* https:// */
	const char *cacert; /* --cacert: verify against it; NULL: do not */
};

/* The connection a probe talks over: plain, or TLS on top of fd. */
struct link {
	int fd;
	gnutls_session_t tls; /* NULL: plain */
	gnutls_certificate_credentials_t cred;
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
	    "  --url URL          http://HOST[:PORT]/PATH or https://... "
	    "(default: the server's\n"
	    "                     own --bind/--port and environment, with "
	    "0.0.0.0\n"
	    "                     and :: mapped to loopback, and /livez)\n"
	    "  --timeout SECONDS  for the whole exchange (default 1)\n"
	    "  --cacert FILE      for https://: verify the server's "
	    "certificate\n"
	    "                     and name against these PEM CAs (default: "
	    "no\n"
	    "                     verification, as the kubelet's HTTPS "
	    "probes)\n"
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

/* http[s]://host[:port]/path, host may be [v6]. 0 or -1. */
static int
parse_url(const char *url, struct target *t)
{
	const char *p, *host, *host_end, *path;
	size_t hl;

	if (strncmp(url, "http://", 7) == 0) {
		host = url + 7;
		t->tls = 0;
	} else if (strncmp(url, "https://", 8) == 0) {
		host = url + 8;
		t->tls = 1;
	} else {
		return -1;
	}
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
		snprintf(t->port, sizeof(t->port), "%s", t->tls ? "443" : "80");
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
	t->tls = 0;
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

/*
 * The TLS handshake over l->fd by the deadline: with --cacert the chain and
 * the name are verified, else nothing is (the kubelet's HTTPS probes do
 * not either). 0, or -1 with why.
 */
static int
tls_start(struct link *l, const struct target *t, long long deadline, char *why,
          size_t wl)
{
	unsigned char addr[16];
	int rc;

	if (gnutls_certificate_allocate_credentials(&l->cred) != 0 ||
	    gnutls_init(&l->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0 ||
	    gnutls_set_default_priority(l->tls) != 0 ||
	    gnutls_credentials_set(l->tls, GNUTLS_CRD_CERTIFICATE, l->cred) !=
	        0) {
		snprintf(why, wl, "TLS: cannot set up a session");
		return -1;
	}
	if (t->cacert != NULL) {
		struct stat st;

		/* GnuTLS reads it with no deadline: a FIFO would block. */
		if (stat(t->cacert, &st) != 0) {
			snprintf(why, wl, "--cacert %.128s: %s", t->cacert,
			         strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(why, wl, "--cacert %.128s: not a regular file",
			         t->cacert);
			return -1;
		}
		rc = gnutls_certificate_set_x509_trust_file(
		    l->cred, t->cacert, GNUTLS_X509_FMT_PEM);
		if (rc <= 0) {
			snprintf(why, wl, "--cacert %.128s: %s", t->cacert,
			         rc == 0 ? "no certificate in it"
			                 : gnutls_strerror(rc));
			return -1;
		}
		gnutls_session_set_verify_cert(l->tls, t->host, 0);
	}
	/* SNI takes a name, never an address. */
	if (inet_pton(AF_INET, t->host, addr) != 1 &&
	    inet_pton(AF_INET6, t->host, addr) != 1)
		gnutls_server_name_set(l->tls, GNUTLS_NAME_DNS, t->host,
		                       strlen(t->host));
	gnutls_transport_set_int(l->tls, l->fd);
	for (;;) {
		rc = gnutls_handshake(l->tls);
		if (rc == GNUTLS_E_SUCCESS)
			return 0;
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) {
			if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
				snprintf(why, wl,
				         "TLS: the certificate does not verify "
				         "against --cacert for %.64s",
				         t->host);
			else
				snprintf(why, wl, "TLS: %s",
				         gnutls_strerror(rc));
			return -1;
		}
		if (!wait_fd(l->fd,
		             gnutls_record_get_direction(l->tls) ? POLLOUT
		                                                 : POLLIN,
		             deadline)) {
			snprintf(why, wl, "TLS handshake: timed out");
			return -1;
		}
	}
}

/* send() or its TLS form: bytes written, 0 to wait, -1 failed. */
static ssize_t
link_send(struct link *l, const char *buf, size_t len)
{
	ssize_t n;

	if (l->tls == NULL) {
		n = send(l->fd, buf, len, MSG_NOSIGNAL);
		return n >= 0 ? n : errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
	n = gnutls_record_send(l->tls, buf, len);
	return n >= 0                                             ? n
	       : n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? 0
	                                                          : -1;
}

/* recv() or its TLS form: bytes read, 0 at the end, -2 to wait, -1
 * failed. */
static ssize_t
link_recv(struct link *l, char *buf, size_t len)
{
	ssize_t n;

	if (l->tls == NULL) {
		n = recv(l->fd, buf, len, 0);
		return n >= 0 ? n : errno == EAGAIN || errno == EINTR ? -2 : -1;
	}
	/* Bytes GnuTLS has decrypted already need no poll. */
	n = gnutls_record_recv(l->tls, buf, len);
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	return n >= 0                                             ? n
	       : n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? -2
	                                                          : -1;
}

static void
link_close(struct link *l)
{
	if (l->tls != NULL)
		gnutls_deinit(l->tls);
	if (l->cred != NULL)
		gnutls_certificate_free_credentials(l->cred);
	if (l->fd >= 0)
		close(l->fd);
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
	struct link l = {.fd = -1, .tls = NULL, .cred = NULL};
	int status = -1, rc, reqlen;

	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(t->host, t->port, &hints, &res);
	if (rc != 0) {
		snprintf(why, wl, "%.64s: %s", t->host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai != NULL && l.fd < 0;
	     ai = ai->ai_next)
		l.fd = connect_by(ai, deadline, why, wl);
	freeaddrinfo(res);
	if (l.fd < 0)
		return -1;
	if (t->tls && tls_start(&l, t, deadline, why, wl) != 0)
		goto out;

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

		if (!wait_fd(l.fd, POLLOUT, deadline)) {
			snprintf(why, wl, "send: timed out");
			goto out;
		}
		n = link_send(&l, req + sent, (size_t)reqlen - sent);
		if (n < 0) {
			snprintf(why, wl, "send: %s",
			         l.tls != NULL ? "TLS failed"
			                       : strerror(errno));
			goto out;
		}
		sent += (size_t)n;
	}
	/* The status line is all a probe needs. */
	while (memchr(resp, '\n', got) == NULL && got < sizeof(resp) - 1) {
		ssize_t n;

		n = link_recv(&l, resp + got, sizeof(resp) - 1 - got);
		if (n == 0)
			break;
		if (n == -1) {
			snprintf(why, wl, "recv: %s",
			         l.tls != NULL ? "TLS failed"
			                       : strerror(errno));
			goto out;
		}
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (!wait_fd(l.fd, POLLIN, deadline)) {
			snprintf(why, wl, "no answer within %u ms", timeout_ms);
			goto out;
		}
	}
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1 || status < 100) {
		snprintf(why, wl, "not an HTTP answer");
		status = -1;
	}
out:
	link_close(&l);
	return status;
}

int
probe_main(int argc, char **argv)
{
	char *rest[MAX_ARGS];
	const char *url = NULL, *a = NULL, *cacert = NULL;
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
		            strcmp(a, "--timeout") == 0 ||
		            strcmp(a, "--cacert") == 0) &&
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
		} else if (strcmp(a, "--cacert") == 0) {
			cacert = argv[++i];
		} else if (strncmp(a, "--cacert=", 9) == 0) {
			cacert = a + 9;
		} else if (strcmp(a, "--timeout") == 0) {
			a = argv[++i];
			if (number_parse_seconds(a, 3600, &timeout_ms) != 0 ||
			    timeout_ms == 0)
				goto bad_timeout;
		} else if (strncmp(a, "--timeout=", 10) == 0) {
			a += 10;
			if (number_parse_seconds(a, 3600, &timeout_ms) != 0 ||
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
			    "http://HOST[:PORT]/PATH or https://...)\n",
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
	t.cacert = cacert;
	status = probe_once(&t, timeout_ms, why, sizeof(why));
	if (status >= 200 && status <= 399)
		return PROBE_OK;
	if (status > 0)
		snprintf(why, sizeof(why), "status %d", status);
	fprintf(stderr, "microd probe: %s://%s%s%s:%s%s: %s\n",
	        t.tls ? "https" : "http",
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
