/* SPDX-License-Identifier: MIT */
/* harness.h -- run the real microd binary and talk HTTP to it */
#ifndef MICROD_HARNESS_H
#define MICROD_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct microd {
	pid_t pid;
	unsigned int port;
	char base[64];     /* http://127.0.0.1:PORT */
	char log_path[64]; /* the server's stderr */
};

long long now_ms(void);
/* A pause between polls of a condition that has its own deadline. */
void pause_ms(int ms);

/*
 * Starts $MICROD_BIN --bind 127.0.0.1 --port 0 plus args (NULL-terminated),
 * with env (NAME=VALUE strings, NULL-terminated, may be NULL) added to the
 * environment, and waits for its "listening on" line. 0 or -1.
 */
int microd_start(struct microd *m, const char *const *args,
                 const char *const *env);
/* Waits up to timeout_ms for the log to contain needle. 1 found, 0 not. */
int microd_wait_log(const struct microd *m, const char *needle, int timeout_ms);
/* Waits up to timeout_ms for exit; returns the wait status or -1. */
int microd_wait_exit(struct microd *m, int timeout_ms);
/* The server's log so far (malloc'd), or NULL. */
char *microd_log(const struct microd *m);
/* SIGKILLs if still running, reaps, removes the log. */
void microd_cleanup(struct microd *m);
/* Resident set size in KiB, -1 on error. */
long microd_rss_kib(const struct microd *m);

/* Runs $MICROD_BIN with args; captures stdout+stderr. Returns wait status. */
int microd_run(const char *const *args, const char *const *env, char *out,
               size_t outlen);

struct http_result {
	long status;
	char *body;
	size_t body_len;
	char *headers; /* raw header block of the final response */
	json_t *json;  /* the parsed body, NULL when not JSON */
	long connects; /* new connections curl made for this request */
	int curl_error;
};

struct http_opts {
	const char *method;       /* default GET, or POST with a body */
	const char *content_type; /* NULL: none sent */
	const char *body;
	size_t body_len;
	int http10;
	int head;
	void *curl; /* reuse this CURL handle (keep-alive), else a fresh one */
};

struct http_result http_do(const char *base, const char *path,
                           const struct http_opts *o);
struct http_result http_get(const char *base, const char *path);
/* A response header's value (copied into buf), or NULL. */
const char *http_header(const struct http_result *r, const char *name,
                        char *buf, size_t len);
void http_result_free(struct http_result *r);
void *http_handle_new(void);
void http_handle_free(void *curl);

/* Raw sockets for what libcurl will not send. */
int raw_connect(unsigned int port);
int raw_send(int fd, const void *data, size_t len);
/* Reads into buf (NUL-terminated) until EOF, cap, or timeout. Returns bytes. */
size_t raw_recv(int fd, char *buf, size_t cap, int timeout_ms);
/* Reads until buf contains needle, EOF, or timeout. 1 found, 0 not. */
int raw_recv_until(int fd, char *buf, size_t cap, const char *needle,
                   int timeout_ms);

#endif
