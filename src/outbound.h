/* SPDX-License-Identifier: MIT */
/*
 * outbound.h -- microd's one HTTP/1.1 client: a connection with a deadline
 * (plain or TLS), one GET or POST, and the status line read as RFC 9112
 * says; used by the http:// and tcp:// health checks, by `microd probe` and
 * by the span exporter
 */
#ifndef MICROD_OUTBOUND_H
#define MICROD_OUTBOUND_H

#include <gnutls/gnutls.h>
#include <stddef.h>

/* Where to connect. */
struct outbound_target {
	const char *host;   /* a name or an address, an IPv6 one unbracketed */
	unsigned int port;  /* 0 to 65535 */
	int tls;            /* https:// */
	const char *cacert; /* TLS: verify against these PEM CAs; NULL: not */
};

/* One connection. Its members are this module's own. */
struct outbound {
	int fd; /* -1: closed */
	gnutls_session_t tls;
	gnutls_certificate_credentials_t cred;
	int cancel_fd; /* readable: give up at once; -1: none */
	long long deadline_ms, timeout_ms;
	char host[256];
	unsigned int port;
};

/*
 * Connects to t (and does the TLS handshake for t->tls) within timeout_ms,
 * which then bounds the whole exchange; a readable cancel_fd (-1: none)
 * cuts every wait short. 0, or -1 with why ("connect to HOST:PORT: ...").
 * o is always to be closed with outbound_close (or ..._after_answer).
 */
int outbound_open(struct outbound *o, const struct outbound_target *t,
                  long long timeout_ms, int cancel_fd, char *why, size_t len);

/*
 * Sends GET path with user_agent, and traceparent when not NULL (the
 * header's value), then reads the status line. 0 for a 2xx or 3xx status,
 * else -1 with why ("GET PATH: ..." quoting the status line, or naming the
 * failure). *status is the status code once a well-formed status line
 * arrived (an interim 1xx is not waited past), else -1.
 */
int outbound_get(struct outbound *o, const char *path, const char *user_agent,
                 const char *traceparent, int *status, char *why, size_t len);

/*
 * Sends POST path with user_agent, the header lines in headers ("Name:
 * value\r\n" each; NULL: none), Content-Type type and the body of len
 * bytes, then reads the answer's head (8 KiB at most). *status is its
 * status code once a well-formed status line arrived, else -1;
 * *retry_after_ms the Retry-After header's delay-seconds in milliseconds,
 * or -1 when none came (or one as an HTTP-date). 0 for a 2xx status, else
 * -1 with why ("POST PATH: ..." quoting the status line, or naming the
 * failure).
 */
int outbound_post(struct outbound *o, const char *path, const char *user_agent,
                  const char *headers, const char *type, const char *body,
                  size_t body_len, int *status, long long *retry_after_ms,
                  char *why, size_t len);

/*
 * The delay-seconds of a Retry-After header in the answer head buf[0..n)
 * (the status line first), in milliseconds; -1 when there is none, or its
 * value is not plain digits (an HTTP-date).
 */
long long outbound_retry_after(const char *buf, size_t n);

/* Closes o at once. Safe on a closed one. */
void outbound_close(struct outbound *o);

/*
 * Reads the rest of the answer to the peer's close (64 KiB and 250 ms at
 * most), then closes: a socket closed with bytes unread sends a reset,
 * which the peer would log as an error.
 */
void outbound_close_after_answer(struct outbound *o);

enum outbound_line {
	OUTBOUND_LINE_MORE, /* no verdict yet: more bytes needed */
	OUTBOUND_LINE_OK,   /* a well-formed status line */
	OUTBOUND_LINE_BAD,  /* a byte breaks the rule */
};

/*
 * The verdict on the status line at the start of buf[0..n), the bytes of
 * the answer received so far, whatever their reads: "HTTP/1.0" or
 * "HTTP/1.1", a space, three digits, then a space or the line's end (CRLF
 * or a bare LF). OK sets *status (0 to 999; which of them pass is the
 * caller's rule). Once OK or BAD, more bytes never change the verdict.
 */
enum outbound_line outbound_status_line(const char *buf, size_t n, int *status);

#endif
