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
#include "status.h"

/* Bounds, so a refusal never keeps the failing start waiting long. */
#define REFUSE_MAX 256
#define REFUSE_MS 2000
#define READ_MS 100  /* for a client's head */
#define CLOSE_MS 100 /* for all the clients to close after the answers */

/*
 * Reads what the client sends until the end of its head (a blank line), it
 * closes, or the time is up, so that closing does not reset the connection
 * over unread bytes.
 */
static void
drain(int fd, long long until, int to_head)
{
	char buf[4096], tail[4] = {0};

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		long long left = until - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			return;
		for (ssize_t i = 0; to_head && i < n; i++) {
			memmove(tail, tail + 1, 3);
			tail[3] = buf[i];
			if (memcmp(tail, "\r\n\r\n", 4) == 0 ||
			    memcmp(tail + 2, "\n\n", 2) == 0)
				return;
		}
	}
}

/* Answers once the head is in (a connection may come before its bytes). */
static void
answer(int fd, const char *head, size_t head_len, const char *body,
       size_t body_len)
{
	drain(fd, now_ms() + READ_MS, 1);
	if (send(fd, head, head_len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
	        (ssize_t)head_len &&
	    send(fd, body, body_len, MSG_NOSIGNAL | MSG_DONTWAIT) ==
	        (ssize_t)body_len)
		shutdown(fd, SHUT_WR);
}

int
refusal_answer(int listen_fd, const char *detail)
{
	/* problem_new refuses a detail that is not UTF-8: say less then. */
	json_t *problem = problem_new(503, detail);
	char *body, head[256];
	int fds[REFUSE_MAX], n = -1, len;
	long long until = now_ms() + REFUSE_MS;

	if (problem == NULL)
		problem = problem_new(503, "microd cannot start: a bad setting "
		                           "(its log says which)");
	body = problem != NULL ? json_dumps(problem, JSON_COMPACT) : NULL;
	if (body == NULL)
		goto out;
	len = snprintf(head, sizeof(head),
	               "HTTP/1.1 503 %s\r\n"
	               "Content-Type: application/problem+json\r\n"
	               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	               status_title(503), strlen(body));
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
		fds[n++] = fd;
	}
	/* Then a moment, shared by all, for the clients to read and close. */
	until = now_ms() + CLOSE_MS;
	for (int i = 0; i < n; i++) {
		drain(fds[i], until, 0);
		close(fds[i]);
	}
out:
	free(body);
	json_decref(problem);
	return n;
}
