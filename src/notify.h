/* SPDX-License-Identifier: MIT */
/* notify.h -- the service manager's notification protocol (sd_notify) */
#ifndef MICROD_NOTIFY_H
#define MICROD_NOTIFY_H

#include <sys/socket.h>
#include <sys/un.h>

struct notifier {
	int fd; /* -1 when $NOTIFY_SOCKET is unset: sending is a no-op */
	struct sockaddr_un addr;
	socklen_t addr_len;
	long long watchdog_usec; /* 0: no watchdog asked of us */
};

/*
 * Reads $NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and
 * $WATCHDOG_USEC / $WATCHDOG_PID. The variables are left in place. Returns 0,
 * or -1 with err set when they are malformed or the socket cannot be made.
 */
int notify_open(struct notifier *n, char *err, size_t errlen);

/*
 * Sends one datagram of newline-separated KEY=VALUE assignments. Returns 0
 * (also when there is nothing to send to) or -1.
 */
int notify_send(const struct notifier *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void notify_close(struct notifier *n);

#endif
