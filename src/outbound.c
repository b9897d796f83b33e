/* SPDX-License-Identifier: MIT */
/*
 * outbound.c -- microd's one HTTP/1.1 client: connect with a deadline, TLS
 * on request, one GET or POST, and the status line's verdict
 */
#include "outbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"

/* What is read of an answer once its status is known, and for how long. */
#define ANSWER_READ_MAX ((size_t)64 * 1024)
#define ANSWER_READ_MS 250

/* The bytes kept of a status line, and those of it a reason quotes. */
#define LINE_MAX_READ 128
#define LINE_QUOTE 40

/* The most of an answer's head a POST reads (for its Retry-After). */
#define HEAD_READ_MAX ((size_t)8 * 1024)

enum outbound_line
outbound_status_line(const char *buf, size_t n, int *status)
{
	static const char name[] = "HTTP/1.";
	int code = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)buf[i];

		if (i < 7) {
			if (ch != (unsigned char)name[i])
				return OUTBOUND_LINE_BAD;
		} else if (i == 7) { /* the minor version: 1.0 or 1.1 */
			if (ch != '0' && ch != '1')
				return OUTBOUND_LINE_BAD;
		} else if (i == 8) {
			if (ch != ' ')
				return OUTBOUND_LINE_BAD;
		} else if (i < 12) { /* the status code */
			if (ch < '0' || ch > '9')
				return OUTBOUND_LINE_BAD;
			code = code * 10 + (ch - '0');
		} else if (i == 12 && ch == '\r') {
			continue; /* the line ends if an LF follows */
		} else if ((i == 12 && (ch == ' ' || ch == '\n')) ||
		           (i == 13 && ch == '\n')) {
			*status = code;
			return OUTBOUND_LINE_OK;
		} else {
			return OUTBOUND_LINE_BAD;
		}
	}
	return OUTBOUND_LINE_MORE;
}

/*
 * Waits for events on fd until o's deadline: 1 ready; 0 when the deadline
 * passed or o's cancel fd became readable first.
 */
static int
wait_for(const struct outbound *o, int fd, short events)
{
	struct pollfd p[2] = {{.fd = fd, .events = events},
	                      {.fd = o->cancel_fd, .events = POLLIN}};

	for (;;) {
		long long left = o->deadline_ms - now_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(p, 2, left < INT_MAX ? (int)left : INT_MAX);
		if (n < 0 && errno == EINTR)
			continue;
		return n >= 1 && p[1].revents == 0 && p[0].revents != 0;
	}
}

/* "HOST:PORT", an IPv6 address in brackets, as in a Host header. */
static void
host_port(const struct outbound *o, char *out, size_t len)
{
	int v6 = strchr(o->host, ':') != NULL;

	snprintf(out, len, "%s%.64s%s:%u", v6 ? "[" : "", o->host,
	         v6 ? "]" : "", o->port);
}

/* A connected socket to one address, or -1 with why. */
static int
dial_one(const struct outbound *o, const struct addrinfo *ai, char *why,
         size_t len)
{
	char hp[80];
	int fd, err;
	socklen_t elen = sizeof(err);

	host_port(o, hp, sizeof(hp));
	fd = socket(ai->ai_family,
	            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            ai->ai_protocol);
	if (fd < 0) {
		snprintf(why, len, "connect to %s: %s", hp, strerror(errno));
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	err = errno;
	if (err == EINPROGRESS) {
		err = ETIMEDOUT;
		if (wait_for(o, fd, POLLOUT) &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
		    err == 0)
			return fd;
	}
	if (err == ETIMEDOUT)
		snprintf(why, len, "connect to %s: no answer in %lld ms", hp,
		         o->timeout_ms);
	else
		snprintf(why, len, "connect to %s: %s", hp, strerror(err));
	close(fd);
	return -1;
}

/*
 * The TLS handshake over o->fd by the deadline: with t->cacert the chain and
 * the name are verified, else nothing is (the kubelet's HTTPS probes do
 * not either). 0, or -1 with why.
 */
static int
tls_start(struct outbound *o, const struct outbound_target *t, char *why,
          size_t len)
{
	unsigned char addr[16];
	int rc;

	if (gnutls_certificate_allocate_credentials(&o->cred) != 0 ||
	    gnutls_init(&o->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != 0 ||
	    gnutls_set_default_priority(o->tls) != 0 ||
	    gnutls_credentials_set(o->tls, GNUTLS_CRD_CERTIFICATE, o->cred) !=
	        0) {
		snprintf(why, len, "TLS: cannot set up a session");
		return -1;
	}
	if (t->cacert != NULL) {
		struct stat st;

		/* GnuTLS reads it with no deadline: a FIFO would block. */
		if (stat(t->cacert, &st) != 0) {
			snprintf(why, len, "--cacert %.128s: %s", t->cacert,
			         strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(why, len,
			         "--cacert %.128s: not a regular file",
			         t->cacert);
			return -1;
		}
		rc = gnutls_certificate_set_x509_trust_file(
		    o->cred, t->cacert, GNUTLS_X509_FMT_PEM);
		if (rc <= 0) {
			snprintf(why, len, "--cacert %.128s: %s", t->cacert,
			         rc == 0 ? "no certificate in it"
			                 : gnutls_strerror(rc));
			return -1;
		}
		gnutls_session_set_verify_cert(o->tls, o->host, 0);
	}
	/* SNI takes a name, never an address. */
	if (inet_pton(AF_INET, o->host, addr) != 1 &&
	    inet_pton(AF_INET6, o->host, addr) != 1)
		gnutls_server_name_set(o->tls, GNUTLS_NAME_DNS, o->host,
		                       strlen(o->host));
	gnutls_transport_set_int(o->tls, o->fd);
	for (;;) {
		rc = gnutls_handshake(o->tls);
		if (rc == GNUTLS_E_SUCCESS)
			return 0;
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED) {
			if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR)
				snprintf(why, len,
				         "TLS: the certificate does not verify "
				         "against --cacert for %.64s",
				         o->host);
			else
				snprintf(why, len, "TLS: %s",
				         gnutls_strerror(rc));
			return -1;
		}
		if (!wait_for(o, o->fd,
		              gnutls_record_get_direction(o->tls) ? POLLOUT
		                                                  : POLLIN)) {
			snprintf(why, len,
			         "TLS handshake: no answer in %lld ms",
			         o->timeout_ms);
			return -1;
		}
	}
}

int
outbound_open(struct outbound *o, const struct outbound_target *t,
              long long timeout_ms, int cancel_fd, char *why, size_t len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	char port[8], hp[80];
	int err;

	*o = (struct outbound){.fd = -1, .cancel_fd = cancel_fd};
	o->timeout_ms = timeout_ms;
	o->deadline_ms = now_ms() + timeout_ms;
	snprintf(o->host, sizeof(o->host), "%s", t->host);
	o->port = t->port;
	snprintf(port, sizeof(port), "%u", t->port);
	/* A name is resolved by getaddrinfo, which no timeout bounds; an
	 * address (the usual case in a cluster) is not looked up at all. */
	err = getaddrinfo(t->host, port, &hints, &res);
	if (err != 0) {
		snprintf(why, len, "resolve %.64s: %s", t->host,
		         gai_strerror(err));
		return -1;
	}
	host_port(o, hp, sizeof(hp));
	snprintf(why, len, "connect to %s: no address", hp);
	for (const struct addrinfo *ai = res; ai != NULL && o->fd < 0;
	     ai = ai->ai_next)
		o->fd = dial_one(o, ai, why, len);
	freeaddrinfo(res);
	if (o->fd < 0)
		return -1;
	if (t->tls && tls_start(o, t, why, len) != 0) {
		outbound_close(o);
		return -1;
	}
	return 0;
}

/* send() or its TLS form: bytes written, 0 to wait, -1 failed. */
static ssize_t
link_send(struct outbound *o, const char *buf, size_t len)
{
	ssize_t n;

	if (o->tls == NULL) {
		n = send(o->fd, buf, len, MSG_NOSIGNAL);
		return n >= 0 ? n : errno == EAGAIN || errno == EINTR ? 0 : -1;
	}
	n = gnutls_record_send(o->tls, buf, len);
	return n >= 0                                             ? n
	       : n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? 0
	                                                          : -1;
}

/* recv() or its TLS form: bytes read, 0 at the end, -2 to wait, -1
 * failed. */
static ssize_t
link_recv(struct outbound *o, char *buf, size_t len)
{
	ssize_t n;

	if (o->tls == NULL) {
		n = recv(o->fd, buf, len, 0);
		return n >= 0 ? n : errno == EAGAIN || errno == EINTR ? -2 : -1;
	}
	/* Bytes GnuTLS has decrypted already need no poll. */
	n = gnutls_record_recv(o->tls, buf, len);
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	return n >= 0                                             ? n
	       : n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ? -2
	                                                          : -1;
}

/* Why a send or a receive failed. */
static const char *
link_error(const struct outbound *o)
{
	return o->tls != NULL ? "TLS failed" : strerror(errno);
}

/*
 * The first line of buf[0..n) to quote in a reason: to its CR or LF,
 * LINE_QUOTE bytes at most, other control bytes as '?' so that the reason
 * stays one line. The caller makes it valid UTF-8 where that matters.
 */
static void
quote_line(const char *buf, size_t n, char *out, size_t len)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 1 < len && i < LINE_QUOTE; i++) {
		unsigned char ch = (unsigned char)buf[i];

		if (ch == '\r' || ch == '\n')
			break;
		out[k++] = buf[i];
		if (ch < 0x20 || ch == 0x7f)
			out[k - 1] = '?';
	}
	out[k] = '\0';
}

/*
 * Reads the status line into buf (room for LINE_MAX_READ bytes): returns as
 * soon as it passes (a 2xx or 3xx); any other verdict is read on to the
 * line's end, so that the reason quotes the whole line whatever the reads,
 * unless the peer stops. 0 with *verdict and *have, or -1 with why.
 */
static int
read_status_line(struct outbound *o, const char *path, char *buf, size_t *have,
                 enum outbound_line *verdict, int *status, char *why,
                 size_t len)
{
	*have = 0;
	*verdict = OUTBOUND_LINE_MORE;
	for (;;) {
		ssize_t r;

		if (*verdict == OUTBOUND_LINE_OK && *status >= 200 &&
		    *status <= 399)
			return 0;
		if (*verdict != OUTBOUND_LINE_MORE &&
		    (memchr(buf, '\n', *have) != NULL ||
		     *have == LINE_MAX_READ))
			return 0;
		r = link_recv(o, buf + *have, LINE_MAX_READ - *have);
		if (r > 0) {
			*have += (size_t)r;
			if (*verdict == OUTBOUND_LINE_MORE)
				*verdict =
				    outbound_status_line(buf, *have, status);
			continue;
		}
		if (r == -2 && wait_for(o, o->fd, POLLIN))
			continue;
		if (*verdict != OUTBOUND_LINE_MORE)
			return 0; /* the line's end is only for the reason */
		if (r == 0 && *have > 0)
			return 0; /* cut short: the caller quotes it */
		if (r == 0)
			snprintf(why, len,
			         "GET %.64s: closed before a status line",
			         path);
		else if (r == -1)
			snprintf(why, len, "GET %.64s: %s", path,
			         link_error(o));
		else if (*have == 0)
			snprintf(why, len, "GET %.64s: no answer in %lld ms",
			         path, o->timeout_ms);
		else {
			char line[LINE_QUOTE + 1];

			quote_line(buf, *have, line, sizeof(line));
			snprintf(
			    why, len,
			    "GET %.64s: no whole status line in %lld ms: %s",
			    path, o->timeout_ms, line);
		}
		return -1;
	}
}

int
outbound_get(struct outbound *o, const char *path, const char *user_agent,
             const char *traceparent, int *status, char *why, size_t len)
{
	char req[2048], buf[LINE_MAX_READ], line[LINE_QUOTE + 1], hp[80];
	size_t sent = 0, have;
	enum outbound_line verdict;
	int n, v6 = strchr(o->host, ':') != NULL;

	*status = -1;
	n = snprintf(req, sizeof(req),
	             "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
	             "User-Agent: %s\r\n%s%s%sConnection: close\r\n\r\n",
	             path, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
	             user_agent, traceparent != NULL ? "traceparent: " : "",
	             traceparent != NULL ? traceparent : "",
	             traceparent != NULL ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(req)) {
		host_port(o, hp, sizeof(hp));
		snprintf(why, len, "GET %.64s: too long a request for %s", path,
		         hp);
		return -1;
	}
	while (sent < (size_t)n) {
		ssize_t w;

		if (!wait_for(o, o->fd, POLLOUT)) {
			snprintf(why, len, "GET %.64s: no answer in %lld ms",
			         path, o->timeout_ms);
			return -1;
		}
		w = link_send(o, req + sent, (size_t)n - sent);
		if (w < 0) {
			snprintf(why, len, "GET %.64s: %s", path,
			         link_error(o));
			return -1;
		}
		sent += (size_t)w;
	}
	if (read_status_line(o, path, buf, &have, &verdict, status, why, len) !=
	    0)
		return -1;
	quote_line(buf, have, line, sizeof(line));
	if (verdict == OUTBOUND_LINE_MORE) { /* the peer stopped within it */
		snprintf(why, len, "GET %.64s: status line cut short: %s", path,
		         line);
		return -1;
	}
	if (verdict == OUTBOUND_LINE_BAD) {
		*status = -1;
		snprintf(why, len, "GET %.64s: malformed status line: %s", path,
		         line);
		return -1;
	}
	if (*status >= 200 && *status <= 399)
		return 0;
	/* Another status, an interim 1xx answer included: it is not
	 * waited past. */
	snprintf(why, len, "GET %.64s: %s", path, line);
	return -1;
}

/* Writes buf[0..n) by the deadline; 0, or -1 with why. */
static int
send_all(struct outbound *o, const char *what, const char *buf, size_t n,
         char *why, size_t len)
{
	size_t sent = 0;

	while (sent < n) {
		ssize_t w;

		if (!wait_for(o, o->fd, POLLOUT)) {
			snprintf(why, len, "%s: no answer in %lld ms", what,
			         o->timeout_ms);
			return -1;
		}
		w = link_send(o, buf + sent, n - sent);
		if (w < 0) {
			snprintf(why, len, "%s: %s", what, link_error(o));
			return -1;
		}
		sent += (size_t)w;
	}
	return 0;
}

long long
outbound_retry_after(const char *buf, size_t n)
{
	static const char name[] = "\nretry-after:";
	const char *end = buf + n;

	for (const char *p = buf; p + sizeof(name) - 1 < end; p++) {
		uintmax_t v = 0;
		int digits = 0;

		if (strncasecmp(p, name, sizeof(name) - 1) != 0)
			continue;
		p += sizeof(name) - 1;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		for (; p < end && *p >= '0' && *p <= '9'; p++, digits++)
			if (v < 86400000)
				v = v * 10 + (uintmax_t)(*p - '0');
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (digits == 0 || p == end || (*p != '\r' && *p != '\n'))
			return -1;
		return v > 86400 ? 86400000LL : (long long)v * 1000;
	}
	return -1;
}

/* Whether buf[0..n) holds a blank line: an empty CRLF or LF line. */
static int
head_ends(const char *buf, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (buf[i] == '\n' &&
		    (buf[i - 1] == '\n' ||
		     (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
			return 1;
	return 0;
}

/* The answer's head into buf[0..cap) by the deadline: to its blank line,
 * the peer's close, or cap. 0 with *have, or -1 with why. */
static int
read_head(struct outbound *o, const char *what, char *buf, size_t cap,
          size_t *have, char *why, size_t len)
{
	*have = 0;
	while (*have < cap) {
		ssize_t r = link_recv(o, buf + *have, cap - *have);

		if (r > 0) {
			*have += (size_t)r;
			if (head_ends(buf, *have))
				return 0;
			continue;
		}
		if (r == 0)
			break;
		if (r == -2 && wait_for(o, o->fd, POLLIN))
			continue;
		if (r == -1)
			snprintf(why, len, "%s: %s", what, link_error(o));
		else
			snprintf(why, len, "%s: no answer in %lld ms", what,
			         o->timeout_ms);
		return -1;
	}
	if (*have == 0) {
		snprintf(why, len, "%s: closed before a status line", what);
		return -1;
	}
	return 0;
}

int
outbound_post(struct outbound *o, const char *path, const char *user_agent,
              const char *headers, const char *type, const char *body,
              size_t body_len, int *status, long long *retry_after_ms,
              char *why, size_t len)
{
	char req[4096], what[80], line[LINE_QUOTE + 1];
	char *head = NULL;
	size_t have;
	int n, v6 = strchr(o->host, ':') != NULL, rc = -1;

	*status = -1;
	*retry_after_ms = -1;
	snprintf(what, sizeof(what), "POST %.64s", path);
	n = snprintf(req, sizeof(req),
	             "POST %s HTTP/1.1\r\nHost: %s%s%s:%u\r\n"
	             "User-Agent: %s\r\n%sContent-Type: %s\r\n"
	             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	             path, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
	             user_agent, headers != NULL ? headers : "", type,
	             body_len);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		snprintf(why, len, "%s: too long a request head", what);
		return -1;
	}
	head = malloc(HEAD_READ_MAX);
	if (head == NULL) {
		snprintf(why, len, "%s: out of memory", what);
		return -1;
	}
	if (send_all(o, what, req, (size_t)n, why, len) != 0 ||
	    send_all(o, what, body, body_len, why, len) != 0 ||
	    read_head(o, what, head, HEAD_READ_MAX, &have, why, len) != 0)
		goto out;
	quote_line(head, have, line, sizeof(line));
	if (outbound_status_line(head, have, status) != OUTBOUND_LINE_OK) {
		*status = -1;
		snprintf(why, len, "%s: malformed status line: %s", what, line);
		goto out;
	}
	*retry_after_ms = outbound_retry_after(head, have);
	if (*status >= 200 && *status <= 299)
		rc = 0;
	else
		snprintf(why, len, "%s: %s", what, line);
out:
	free(head);
	return rc;
}

void
outbound_close(struct outbound *o)
{
	if (o->tls != NULL)
		gnutls_deinit(o->tls);
	if (o->cred != NULL)
		gnutls_certificate_free_credentials(o->cred);
	if (o->fd >= 0)
		close(o->fd);
	o->tls = NULL;
	o->cred = NULL;
	o->fd = -1;
}

void
outbound_close_after_answer(struct outbound *o)
{
	char buf[4096];
	size_t total = 0;

	o->deadline_ms = now_ms() + ANSWER_READ_MS;
	while (o->fd >= 0 && total < ANSWER_READ_MAX) {
		ssize_t r = link_recv(o, buf, sizeof(buf));

		if (r == 0 || r == -1)
			break;
		if (r > 0)
			total += (size_t)r;
		else if (!wait_for(o, o->fd, POLLIN))
			break;
	}
	outbound_close(o);
}
