/* SPDX-License-Identifier: MIT */
/* refusal.c -- a bad configuration answers the clients waiting on a passed
 * socket with 503, so the service manager does not start microd again and
 * again for connections that are still queued */
#define _GNU_SOURCE /* accept4 */
#include "refusal.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "reply.h"

/* Bounds, so a refusal never keeps the failing start waiting long. */
#define REFUSE_MAX 256
#define REFUSE_MS 1000
#define READ_MS 100

/* Reads what the client sent (its request head) for a moment, so closing
 * does not reset the connection over unread bytes. */
static void
drain(int fd, long long until)
{
	char buf[4096];

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		long long left = until - now_ms();

		if (left <= 0 || poll(&p, 1, (int)left) <= 0 ||
		    recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			return;
	}
}

static void
answer(int fd, const char *head, size_t head_len, const char *body,
       size_t body_len)
{
	long long now = now_ms();

	/* Wait for the head (a connection may come before its bytes), then
	 * answer and read on until the client closes or time is up. */
	drain(fd, now + READ_MS);
	if (send(fd, head, head_len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
	        (ssize_t)head_len &&
	    send(fd, body, body_len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
	        (ssize_t)body_len)
		shutdown(fd, SHUT_WR);
	drain(fd, now_ms() + READ_MS);
	close(fd);
}

int
refusal_answer(int listen_fd, const char *detail)
{
	json_t *problem = problem_new(503, detail);
	char *body = problem != NULL ? json_dumps(problem, JSON_COMPACT) : NULL;
	char head[256];
	int n = -1, len;
	long long until = now_ms() + REFUSE_MS;

	if (body == NULL)
		goto out;
	len = snprintf(head, sizeof(head),
	               "HTTP/1.1 503 %s\r\n"
	               "Content-Type: application/problem+json\r\n"
	               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	               reply_title(503), strlen(body));
	if (len < 0 || (size_t)len >= sizeof(head))
		goto out;
	n = 0;
	while (n < REFUSE_MAX && now_ms() < until) {
		/* The socket is systemd's too: look, rather than change it
		 * to non-blocking. */
		struct pollfd p = {listen_fd, POLLIN, 0};
		int fd;

		if (poll(&p, 1, 0) <= 0)
			break; /* nobody else is waiting */
		fd = accept4(listen_fd, NULL, NULL,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* EAGAIN: nobody else is waiting */
		}
		answer(fd, head, (size_t)len, body, strlen(body));
		n++;
	}
out:
	free(body);
	json_decref(problem);
	return n;
}
