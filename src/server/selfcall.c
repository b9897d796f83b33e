/* SPDX-License-Identifier: MIT */
/*
 * selfcall.c -- microd's own requests to its pool, over socketpairs: the
 * watchdog's check of every worker, and the fuzz target's exchange
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "server.h"

/* The peer address microd gives the connections it adds itself. */
static const struct sockaddr_un internal_peer = {.sun_family = AF_UNIX};
#define INTERNAL_PEER_LEN ((socklen_t)offsetof(struct sockaddr_un, sun_path))

/*
 * Whether libmicrohttpd's accept policy is asked about one of microd's own
 * connections: 0.9.75 hands the policy callback the very address pointer
 * given to MHD_add_connection, on the thread that calls it.
 */
int
selfcall_is_own_peer(const struct sockaddr *addr)
{
	return addr == (const struct sockaddr *)&internal_peer;
}

/*
 * One of microd's own socketpairs. libmicrohttpd keeps a client address of
 * the length it was given, so only its family is read; a socketpair end has
 * no name of its own, while a client accepted on a unix listener has the
 * listener's.
 */
int
is_own_connection(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ca =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const union MHD_ConnectionInfo *fd =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (ca == NULL || ca->client_addr == NULL ||
	    ca->client_addr->sa_family != AF_UNIX || fd == NULL)
		return 0;
	return getsockname(fd->connect_fd, (struct sockaddr *)&ss, &len) == 0 &&
	       len <= offsetof(struct sockaddr_un, sun_path);
}

/* Reads until the peer closes or the deadline; the bytes read, or -1. */
static ssize_t
read_reply(int fd, char *buf, size_t len, long long deadline_ms)
{
	size_t got = 0;

	while (got < len - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline_ms - now_ns() / 1000000;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* Writes all of buf before the deadline; 0 or -1. */
static int
write_all(int fd, const char *buf, size_t len, long long deadline_ms)
{
	while (len > 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		long long left = deadline_ms - now_ns() / 1000000;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t
server_exchange(struct server *srv, const void *req, size_t len, char *out,
                size_t outlen, int timeout_ms)
{
	long long deadline = now_ns() / 1000000 + timeout_ms;
	ssize_t got = -1;
	int sv[2];

	if (outlen == 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	/* MHD owns sv[0] from here on, and closes it even on failure. */
	if (MHD_add_connection(srv->daemon, sv[0],
	                       (const struct sockaddr *)&internal_peer,
	                       INTERNAL_PEER_LEN) != MHD_YES)
		goto out;
	/* A refused request may be answered and closed before it is all
	 * written: what was answered still counts. */
	if (write_all(sv[1], req, len, deadline) == 0)
		shutdown(sv[1], SHUT_WR);
	got = read_reply(sv[1], out, outlen, deadline);
out:
	close(sv[1]);
	return got;
}

int
server_self_check(struct server *srv, int timeout_ms)
{
	struct pool_check c;

	return server_check_pool(srv, timeout_ms, -1, &c) == 0 &&
	               c.answered + c.full == c.workers
	           ? 0
	           : -1;
}

/*
 * A descriptor for the socket fd whose number is congruent to want modulo
 * n, so that MHD_add_connection, which starts looking for a worker with room
 * at fd % n, gives it to worker want. fd itself is closed. -1 on failure.
 */
static int
fd_for_worker(int fd, unsigned int want, unsigned int n)
{
	int spare[CHECK_MAX + 1], used = 0, got = fd;

	while (n > 1 && (unsigned int)got % n != want && used <= CHECK_MAX) {
		int base = got + (int)((want + n - (unsigned int)got % n) % n);

		spare[used++] = got; /* holds its number while we look on */
		got = fcntl(fd, F_DUPFD_CLOEXEC, base);
		if (got < 0)
			break;
	}
	for (int i = 0; i < used; i++)
		if (spare[i] != fd)
			close(spare[i]);
	if (got != fd)
		close(fd);
	return got >= 0 && (n <= 1 || (unsigned int)got % n == want) ? got : -1;
}

int
selfcall_pair(unsigned int n, unsigned int want, int *mhd_fd)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	*mhd_fd = fd_for_worker(sv[0], want, n);
	if (*mhd_fd < 0) {
		close(sv[1]);
		errno = EMFILE;
		return -1;
	}
	return sv[1];
}

int
selfcall_add(struct server *srv, int fd)
{
	return MHD_add_connection(srv->daemon, fd,
	                          (const struct sockaddr *)&internal_peer,
	                          INTERNAL_PEER_LEN) == MHD_YES
	           ? 0
	           : -1;
}

int
server_check_pool(struct server *srv, int timeout_ms, int cancel_fd,
                  struct pool_check *out)
{
	static const char req[] = "GET /health HTTP/1.1\r\n"
	                          "Host: watchdog\r\n"
	                          "User-Agent: microd-watchdog\r\n"
	                          "Connection: close\r\n\r\n";
	struct pollfd p[CHECK_MAX + 1];
	unsigned int n = srv->workers < CHECK_MAX ? srv->workers : CHECK_MAX;
	long long deadline = now_ns() / 1000000 + timeout_ms;
	int waiting = 0, cancelled = 0;

	memset(out, 0, sizeof(*out));
	out->workers = n;
	for (unsigned int i = 0; i < n; i++) {
		struct probe *pr = &srv->probes[i];
		int sv[2];

		p[i].events = POLLIN;
		p[i].fd = pr->fd;
		/*
		 * A check a worker has not answered yet stays its only one:
		 * a stalled worker must not find a pile of them when it wakes.
		 */
		if (pr->fd >= 0) {
			waiting++;
			continue;
		}
		pr->have = 0;
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
			continue; /* counts as not answered */
		sv[0] = fd_for_worker(sv[0], i, n);
		if (sv[0] < 0) {
			close(sv[1]);
			continue;
		}
		/* MHD owns sv[0] from here on, and closes it even on failure.
		 */
		if (MHD_add_connection(srv->daemon, sv[0],
		                       (const struct sockaddr *)&internal_peer,
		                       INTERNAL_PEER_LEN) != MHD_YES) {
			out->full++; /* refused at the connection limit */
			close(sv[1]);
			continue;
		}
		if (write_all(sv[1], req, sizeof(req) - 1, deadline) != 0) {
			close(sv[1]);
			continue;
		}
		shutdown(sv[1], SHUT_WR);
		pr->fd = p[i].fd = sv[1];
		waiting++;
	}
	p[n].fd = cancel_fd;
	p[n].events = POLLIN;
	while (waiting > 0 && !cancelled) {
		long long left = deadline - now_ns() / 1000000;

		if (left <= 0 || poll(p, n + 1, (int)left) < 0)
			break;
		cancelled = p[n].revents != 0;
		for (unsigned int i = 0; i < n; i++) {
			struct probe *pr = &srv->probes[i];
			ssize_t r;

			if (p[i].fd < 0 || p[i].revents == 0)
				continue;
			r = read(p[i].fd, pr->got + pr->have,
			         sizeof(pr->got) - pr->have);
			if (r > 0)
				pr->have += (size_t)r;
			if (r > 0 && pr->have < sizeof(pr->got))
				continue;
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			/* The head's first bytes, the end, or an error. */
			if (pr->have >= 13 &&
			    memcmp(pr->got, "HTTP/1.1 200 ", 13) == 0)
				out->answered++;
			else if (pr->have == 0 && r == 0)
				out->full++; /* closed unanswered: refused */
			close(pr->fd);
			pr->fd = p[i].fd = -1;
			waiting--;
		}
	}
	return cancelled ? -1 : 0;
}
