/* SPDX-License-Identifier: MIT */
/* probe.c -- `microd probe`: one GET with a deadline, for health checks */
#include "probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "number.h"
#include "outbound.h"
#include "resources.h"

/* Never 2: Docker reserves that exit status of a HEALTHCHECK. */
enum { PROBE_OK = 0, PROBE_FAIL = 1 };

#define MAX_ARGS 64

struct target {
	char host[256];
	unsigned int port;
	char path[1024];
	int tls;            /* https:// */
	const char *cacert; /* --cacert: verify against it; NULL: do not */
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

		if (pl == 0 || pl > 5 || strspn(p + 1, "0123456789") < pl)
			return -1;
		t->port = 0;
		for (size_t i = 1; i <= pl; i++)
			t->port = t->port * 10 + (unsigned int)(p[i] - '0');
		if (t->port > 65535)
			return -1;
	} else if (p == path) {
		t->port = t->tls ? 443 : 80;
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
	t->port = cfg->port;
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

/* One GET: 0 for a 2xx or 3xx, else -1 with why and the status, if any. */
static int
probe_once(const struct target *t, unsigned int timeout_ms, int *status,
           char *why, size_t wl)
{
	struct outbound o;
	struct outbound_target to = {.host = t->host,
	                             .port = t->port,
	                             .tls = t->tls,
	                             .cacert = t->cacert};
	int rc;

	*status = -1;
	rc = outbound_open(&o, &to, timeout_ms, -1, why, wl);
	if (rc == 0)
		rc = outbound_get(&o, t->path, "microd-probe", NULL, status,
		                  why, wl);
	/* The status line is all a probe needs. */
	outbound_close(&o);
	return rc;
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
	if (probe_once(&t, timeout_ms, &status, why, sizeof(why)) == 0)
		return PROBE_OK;
	if (status >= 0)
		snprintf(why, sizeof(why), "status %03d", status);
	fprintf(stderr, "microd probe: %s://%s%s%s:%u%s: %s\n",
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
