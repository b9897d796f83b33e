/* SPDX-License-Identifier: MIT */
/* activation.c -- pick the listening socket systemd passed, if any */
#include "activation.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "number.h"

/* The name microd.socket gives its socket (FileDescriptorName=), and the
 * name of an HTTPS socket beside it. */
#define FD_NAME "http"
#define TLS_FD_NAME "https"
#define MAX_FDS 64

/* The index of name in the colon-separated names, or -1. */
static long
name_index(const char *names, long n, const char *name)
{
	const char *p = names;

	for (long i = 0; i < n && p != NULL; i++) {
		const char *end = strchr(p, ':');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len == strlen(name) && strncmp(p, name, len) == 0)
			return i;
		p = end != NULL ? end + 1 : NULL;
	}
	return -1;
}

static int
is_listening_stream(int fd)
{
	int type = 0, listening = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    type != SOCK_STREAM)
		return 0;
	len = sizeof(listening);
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) ==
	           0 &&
	       listening;
}

/* The descriptor checked and kept open across exec: fd, or -1 with err. */
static int
take(int fd, char *err, size_t errlen)
{
	if (!is_listening_stream(fd)) {
		snprintf(
		    err, errlen,
		    "passed descriptor %d is not a listening stream socket",
		    fd);
		return ACTIVATION_ERROR;
	}
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(err, errlen, "passed descriptor %d: %s", fd,
		         strerror(errno));
		return ACTIVATION_ERROR;
	}
	return fd;
}

int
activation_listen_fd(char *err, size_t errlen, int *tls_fd)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	uintmax_t pid, count;
	long n, pick = 0, tls_pick = -1;
	int fd = ACTIVATION_NONE;

	*tls_fd = ACTIVATION_NONE;
	if (pid_s == NULL || fds_s == NULL)
		goto out;
	if (number_parse(pid_s, INT32_MAX, &pid) != 0 || (pid_t)pid != getpid())
		goto out; /* meant for another process */
	if (number_parse(fds_s, MAX_FDS, &count) != 0) {
		snprintf(err, errlen, "LISTEN_FDS: invalid value '%s'", fds_s);
		fd = ACTIVATION_ERROR;
		goto out;
	}
	n = (long)count;
	if (n == 0)
		goto out;
	if (names != NULL && *names != '\0') {
		pick = name_index(names, n, FD_NAME);
		tls_pick = name_index(names, n, TLS_FD_NAME);
		if (pick < 0) {
			snprintf(err, errlen,
			         "LISTEN_FDNAMES '%s' names no '" FD_NAME
			         "' socket",
			         names);
			fd = ACTIVATION_ERROR;
			goto close_rest;
		}
	}
	fd = take(ACTIVATION_FD_START + (int)pick, err, errlen);
	if (fd >= 0 && tls_pick >= 0) {
		*tls_fd =
		    take(ACTIVATION_FD_START + (int)tls_pick, err, errlen);
		if (*tls_fd < 0) {
			*tls_fd = ACTIVATION_NONE;
			fd = ACTIVATION_ERROR;
		}
	}
close_rest:
	for (long i = 0; i < n; i++)
		if (ACTIVATION_FD_START + (int)i != fd &&
		    ACTIVATION_FD_START + (int)i != *tls_fd)
			close(ACTIVATION_FD_START + (int)i);
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return fd;
}
