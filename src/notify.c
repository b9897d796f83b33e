/* SPDX-License-Identifier: MIT */
/*
 * notify.c -- sd_notify's datagram protocol, spoken directly: one
 * AF_UNIX/SOCK_DGRAM message of KEY=VALUE lines to $NOTIFY_SOCKET, as
 * sd_notify(3) documents it (a stable interface), so microd needs no
 * libsystemd.
 */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "number.h"

/* $WATCHDOG_USEC, when $WATCHDOG_PID is unset or names us. */
static int
watchdog_from_env(long long *usec, char *err, size_t errlen)
{
	const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	uintmax_t v, p;

	*usec = 0;
	if (us == NULL)
		return 0;
	if (number_parse(us, 24ULL * 3600 * 1000000, &v) != 0 || v == 0) {
		snprintf(err, errlen, "WATCHDOG_USEC: invalid value '%s'", us);
		return -1;
	}
	if (pid != NULL && (number_parse(pid, INTMAX_MAX, &p) != 0 ||
	                    p != (uintmax_t)getpid()))
		return 0; /* meant for another process */
	*usec = (long long)v;
	return 0;
}

int
notify_open(struct notifier *n, char *err, size_t errlen)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t len;

	memset(n, 0, sizeof(*n));
	n->fd = -1;
	if (watchdog_from_env(&n->watchdog_usec, err, errlen) != 0)
		return -1;
	if (path == NULL || *path == '\0')
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') ||
	    len >= sizeof(n->addr.sun_path)) {
		snprintf(err, errlen,
		         "NOTIFY_SOCKET: '%s' is neither an absolute path nor "
		         "an abstract '@' name that fits",
		         path);
		return -1;
	}
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@')
		n->addr.sun_path[0] =
		    '\0'; /* abstract: no terminator counted */
	n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	                          (path[0] == '@' ? 0 : 1));
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s",
		         strerror(errno));
		return -1;
	}
	return 0;
}

int
notify_send(const struct notifier *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int len;

	if (n->fd < 0)
		return 0;
	va_start(ap, fmt);
	len = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(msg))
		return -1;
	/* Never blocks: a service manager that does not read its socket must
	 * not stall the watchdog thread or a stop. */
	if (sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT,
	           (const struct sockaddr *)&n->addr, n->addr_len) != len)
		return -1;
	return 0;
}

void
notify_close(struct notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}
