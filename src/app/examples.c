/* SPDX-License-Identifier: MIT */
/*
 * examples.c -- the example routes, off unless --example-routes: a status
 * echo, a blocking delay on the handler pool, and a note store that shows a
 * path parameter, a raw body, reply headers and the application context
 */
#include "handlers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "app.h"
#include "log.h"
#include "number.h"
#include "reply.h"
#include "utf8.h"

/* What a note's name may hold: it goes into Location as it is. */
#define NAME_BYTES                                                             \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"

struct note {
	char name[NOTES_NAME_MAX + 1]; /* "" for a free slot */
	char *text;                    /* owned; NUL after len bytes */
	size_t len;
	unsigned long long version; /* the store's write count at the write */
};

struct notes {
	pthread_mutex_t lock; /* guards everything below */
	unsigned long long writes;
	size_t used;
	struct note at[NOTES_MAX];
};

/* GET /status/{code}: problem details with that status, 200 to 599. */
void
handle_status(const struct request *req, struct reply *rep)
{
	uintmax_t code;

	if (number_parse(request_param(req, "code"), 599, &code) != 0 ||
	    code < 100) {
		reply_error(rep, 400,
		            "code must be an integer from 100 to 599");
		return;
	}
	if (code < 200) {
		reply_error(rep, 400,
		            "%ju is informational: a 1xx status cannot end a "
		            "request",
		            code);
		return;
	}
	reply_error(rep, (unsigned int)code, "status %ju, as asked", code);
	if (code == 429 || code == 503)
		reply_header(rep, "Retry-After", "1");
	else if (code == 301 || code == 302 || code == 303 || code == 307 ||
	         code == 308)
		reply_header(rep, "Location", "/status/200");
}

/*
 * GET /delay/{ms}: sleeps up to EXAMPLES_DELAY_MAX_MS, then answers. A
 * ROUTE_BLOCKING route: it runs on the handler pool, never on a thread that
 * serves connections.
 */
void
handle_delay(const struct request *req, struct reply *rep)
{
	uintmax_t ms;
	struct timespec ts;

	if (number_parse(request_param(req, "ms"), EXAMPLES_DELAY_MAX_MS,
	                 &ms) != 0) {
		reply_error(rep, 400, "ms must be an integer from 0 to %d",
		            EXAMPLES_DELAY_MAX_MS);
		return;
	}
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	/* What the handler thread saw of the request, for the curious. */
	reply_json(rep, 200,
	           json_pack("{s:I, s:s, s:s, s:s?}", "delayed_ms",
	                     (json_int_t)ms, "request_id", req->id, "peer",
	                     request_peer(req), "user_agent",
	                     request_header(req, "User-Agent")));
}

/*
 * GET /resolve/{host}: the host's addresses. getaddrinfo() may wait seconds
 * for DNS, so the route is ROUTE_BLOCKING: it runs on the handler pool, and
 * the threads that serve connections (and the probes) never wait for it.
 */
void
handle_resolve(const struct request *req, struct reply *rep)
{
	const char *host = request_param(req, "host");
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	json_t *addrs;
	int err;

	err = getaddrinfo(host, NULL, &hints, &res);
	if (err != 0) {
		reply_error(rep, err == EAI_NONAME ? 404 : 502, "%s: %s", host,
		            gai_strerror(err));
		return;
	}
	addrs = json_array();
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		char text[INET6_ADDRSTRLEN];
		const struct sockaddr_in *v4 = (const void *)ai->ai_addr;
		const struct sockaddr_in6 *v6 = (const void *)ai->ai_addr;
		const void *a = ai->ai_family == AF_INET6
		                    ? (const void *)&v6->sin6_addr
		                    : (const void *)&v4->sin_addr;

		if (inet_ntop(ai->ai_family, a, text, sizeof(text)) != NULL)
			json_array_append_new(addrs, json_string(text));
	}
	freeaddrinfo(res);
	reply_json(rep, 200,
	           json_pack("{s:s, s:o}", "host", host, "addresses", addrs));
	reply_header(rep, "Cache-Control", "max-age=30");
}

static struct note *
note_find(struct notes *ns, const char *name)
{
	for (size_t i = 0; i < NOTES_MAX; i++)
		if (ns->at[i].name[0] != '\0' &&
		    strcmp(ns->at[i].name, name) == 0)
			return &ns->at[i];
	return NULL;
}

static void
etag_of(const struct note *n, char *buf, size_t len)
{
	snprintf(buf, len, "\"%llu\"", n->version);
}

/* Whether If-None-Match (a list of entity tags, or "*") names etag. */
static int
none_match(const char *header, const char *etag)
{
	size_t n = strlen(etag);

	if (header == NULL)
		return 0;
	for (const char *p = header; *p != '\0';) {
		size_t len;

		p += strspn(p, " \t,");
		if (strncmp(p, "W/", 2) == 0)
			p += 2; /* If-None-Match compares weakly */
		len = strcspn(p, " \t,");
		if ((len == 1 && *p == '*') ||
		    (len == n && memcmp(p, etag, n) == 0))
			return 1;
		p += len;
	}
	return 0;
}

static int
is_utf8(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq_len((const unsigned char *)s + i, len - i);

		if (n == 0 || s[i] == '\0')
			return 0;
		i += n;
	}
	return 1;
}

/*
 * PUT /notes/{name}: stores the body (UTF-8 text, at most the route's 4096
 * bytes) under name. 201 with Location for a new note, 200 for a replaced
 * one; both carry the note's ETag. A ROUTE_BLOCKING route, as a write to a
 * real database would be.
 */
void
handle_note_put(const struct request *req, struct reply *rep)
{
	struct notes *ns = req->app->notes;
	const char *name = request_param(req, "name");
	struct note *n;
	char etag[32], location[NOTES_NAME_MAX + 8];
	unsigned int status = 200;
	char *text;

	/* Only dots would be a path segment of its own in Location. */
	if (strlen(name) > NOTES_NAME_MAX ||
	    strspn(name, NAME_BYTES) != strlen(name) ||
	    strspn(name, ".") == strlen(name)) {
		reply_error(
		    rep, 400,
		    "a note's name is 1 to %d letters, digits, '.', '_' "
		    "or '-', not only dots",
		    NOTES_NAME_MAX);
		return;
	}
	if (!is_utf8(req->raw, req->raw_len)) {
		reply_error(rep, 415, "a note is UTF-8 text without NUL bytes");
		return;
	}
	text = malloc(req->raw_len + 1);
	if (text == NULL) {
		reply_json(rep, 500, NULL);
		return;
	}
	memcpy(text, req->raw, req->raw_len + 1);
	pthread_mutex_lock(&ns->lock);
	n = note_find(ns, name);
	if (n == NULL && ns->used < NOTES_MAX) {
		for (n = ns->at; n->name[0] != '\0'; n++)
			;
		snprintf(n->name, sizeof(n->name), "%s", name);
		ns->used++;
		status = 201;
	}
	if (n == NULL) {
		pthread_mutex_unlock(&ns->lock);
		free(text);
		reply_error(rep, 507, "the store holds %d notes already",
		            NOTES_MAX);
		return;
	}
	free(n->text);
	n->text = text; /* the store owns it now */
	n->len = req->raw_len;
	n->version = ++ns->writes;
	etag_of(n, etag, sizeof(etag));
	pthread_mutex_unlock(&ns->lock);
	reply_json(rep, status,
	           json_pack("{s:s, s:I}", "name", name, "bytes",
	                     (json_int_t)req->raw_len));
	reply_header(rep, "ETag", etag);
	if (status == 201) {
		snprintf(location, sizeof(location), "/notes/%s", name);
		reply_header(rep, "Location", location);
	}
}

/*
 * GET /notes/{name}: the note as text/plain with its ETag; 304 when
 * If-None-Match names it; 404 when there is none. It only takes the store's
 * lock for a copy, so it runs where the request arrived.
 */
void
handle_note_get(const struct request *req, struct reply *rep)
{
	struct notes *ns = req->app->notes;
	const char *name = request_param(req, "name");
	struct note *n;
	char etag[32], *text = NULL;
	size_t len = 0;

	pthread_mutex_lock(&ns->lock);
	n = note_find(ns, name);
	if (n != NULL) {
		etag_of(n, etag, sizeof(etag));
		len = n->len;
		text = malloc(len + 1);
		if (text != NULL)
			memcpy(text, n->text, len + 1);
	}
	pthread_mutex_unlock(&ns->lock);
	if (n == NULL) {
		reply_error(rep, 404, "no note named %s", name);
		return;
	}
	/* A 304 goes out without its body, but with the Content-Length of
	 * the 200 (RFC 9110, 8.6): so it gets the same text. */
	reply_text(rep,
	           none_match(request_header(req, "If-None-Match"), etag) ? 304
	                                                                  : 200,
	           text, len, "text/plain; charset=utf-8");
	reply_header(rep, "ETag", etag);
}

struct notes *
notes_open(void)
{
	struct notes *ns = calloc(1, sizeof(*ns));

	if (ns == NULL || pthread_mutex_init(&ns->lock, NULL) != 0) {
		log_error("%s: cannot set up the note store", __func__);
		free(ns);
		return NULL;
	}
	log_info("example routes on: /status/{code}, /delay/{ms}, "
	         "/resolve/{host}, /notes/{name}; note store open (%d notes of "
	         "at most 4096 "
	         "bytes)",
	         NOTES_MAX);
	return ns;
}

void
notes_drain(struct notes *ns)
{
	pthread_mutex_lock(&ns->lock);
	log_info("note store: drain begins with %zu notes", ns->used);
	pthread_mutex_unlock(&ns->lock);
}

void
notes_close(struct notes *ns)
{
	if (ns == NULL)
		return;
	log_info("note store closed: %zu notes, %llu writes", ns->used,
	         ns->writes);
	for (size_t i = 0; i < NOTES_MAX; i++)
		free(ns->at[i].text);
	pthread_mutex_destroy(&ns->lock);
	free(ns);
}
