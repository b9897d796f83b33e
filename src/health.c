/* SPDX-License-Identifier: MIT */
/* health.c -- check targets from the configuration; runs -> status */
#include "health.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "number.h"

int
health_name_valid(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= HEALTH_NAME_MAX &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* "HOST:PORT" up to end: fills host and port. */
static int
parse_authority(const char *s, const char *end, struct health_target *out,
                const char **why)
{
	const char *colon, *host = s, *host_end;
	char port[8];
	uintmax_t v;

	if (*s == '[') {
		host = s + 1;
		host_end = memchr(host, ']', (size_t)(end - host));
		if (host_end == NULL || host_end[1] != ':') {
			*why = "an IPv6 address needs [ADDR]:PORT";
			return -1;
		}
		colon = host_end + 1;
	} else {
		colon = NULL;
		for (const char *p = s; p < end; p++)
			if (*p == ':')
				colon = p;
		if (colon == NULL) {
			*why = "no :PORT";
			return -1;
		}
		host_end = colon;
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			*why = "an IPv6 address needs [ADDR]:PORT";
			return -1;
		}
	}
	if (host_end == host || (size_t)(host_end - host) > HEALTH_HOST_MAX) {
		*why = "no host, or one longer than 253 bytes";
		return -1;
	}
	for (const char *p = host; p < host_end; p++) {
		unsigned char b = (unsigned char)*p;

		if (host != s && !isxdigit(b) && b != ':' && b != '.') {
			*why = "an IPv6 address holds hex digits, ':' and '.'";
			return -1;
		}
		if (host == s && !isalnum(b) && b != '.' && b != '-' &&
		    b != '_') {
			*why = "a host holds letters, digits, '.', '-', '_' or "
			       "an address";
			return -1;
		}
	}
	if (host != s && memchr(host, ':', (size_t)(host_end - host)) == NULL) {
		*why = "an IPv6 address holds hex digits, ':' and '.'";
		return -1;
	}
	if ((size_t)(end - colon - 1) >= sizeof(port)) {
		*why = "the port must be 1 to 65535";
		return -1;
	}
	memcpy(port, colon + 1, (size_t)(end - colon - 1));
	port[end - colon - 1] = '\0';
	if (number_parse(port, 65535, &v) != 0 || v == 0) {
		*why = "the port must be 1 to 65535";
		return -1;
	}
	memcpy(out->host, host, (size_t)(host_end - host));
	out->host[host_end - host] = '\0';
	out->port = (unsigned int)v;
	return 0;
}

int
health_parse_target(const char *spec, struct health_target *out,
                    const char **why)
{
	const char *eq = strchr(spec, '='), *rest, *end;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (eq == NULL) {
		*why = "expected NAME=tcp://HOST:PORT or "
		       "NAME=http://HOST:PORT/PATH";
		return -1;
	}
	n = (size_t)(eq - spec);
	if (n == 0 || n > HEALTH_NAME_MAX ||
	    strspn(spec, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n) {
		*why = "the name must be 1 to 32 of a-z, 0-9, '_', '-'";
		return -1;
	}
	memcpy(out->name, spec, n);
	rest = eq + 1;
	if (strncmp(rest, "tcp://", 6) == 0) {
		out->kind = HEALTH_TCP;
		rest += 6;
		end = rest + strlen(rest);
		if (memchr(rest, '/', (size_t)(end - rest)) != NULL) {
			*why = "a tcp:// check takes no path";
			return -1;
		}
	} else if (strncmp(rest, "http://", 7) == 0) {
		out->kind = HEALTH_HTTP;
		rest += 7;
		end = rest + strcspn(rest, "/?");
	} else {
		*why = "the scheme must be tcp:// or http://";
		return -1;
	}
	if (parse_authority(rest, end, out, why) != 0)
		return -1;
	if (out->kind == HEALTH_HTTP) {
		const char *path = *end == '\0' ? "/" : end;

		if (*path == '?') {
			*why = "the path must start with '/'";
			return -1;
		}
		if (strlen(path) > HEALTH_PATH_MAX) {
			*why = "the path is longer than 512 bytes";
			return -1;
		}
		for (const char *p = path; *p != '\0'; p++)
			if ((unsigned char)*p <= ' ' ||
			    (unsigned char)*p >= 0x7f) {
				*why = "a space or control byte in the path "
				       "(percent-encode it)";
				return -1;
			}
		snprintf(out->path, sizeof(out->path), "%s", path);
	}
	return 0;
}

int
health_record(struct health_state *st, int passed, unsigned int threshold,
              long long duration_ns, long long at_ms, const char *reason)
{
	enum health_status was = st->status;

	st->runs++;
	st->duration_ns = duration_ns;
	st->ran_at_ms = at_ms;
	if (passed) {
		st->failing = 0;
		st->reason[0] = '\0';
		st->status = HEALTH_PASS;
	} else {
		st->failures++;
		st->failing++;
		snprintf(st->reason, sizeof(st->reason), "%s",
		         reason != NULL ? reason : "failed");
		if (st->failing >= threshold || was == HEALTH_UNKNOWN)
			st->status = HEALTH_FAIL;
	}
	return st->status != was;
}

int
health_passes(enum health_status s, int liveness)
{
	return s == HEALTH_PASS || (liveness && s == HEALTH_UNKNOWN);
}

const char *
health_status_word(enum health_status s)
{
	return s == HEALTH_PASS ? "pass" : "fail";
}
