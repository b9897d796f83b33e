/* SPDX-License-Identifier: MIT */
/*
 * examples.c -- the example routes, off unless --example-routes: a status
 * echo, a blocking delay on the handler pool, a name lookup, and a raw text
 * body counted; the example resource, /notes, is notes.c
 */
#include "handlers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "number.h"
#include "reply.h"
#include "utf8.h"

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

/*
 * POST /count: the bytes, characters and lines of a UTF-8 text body of at
 * most the route's 4096 bytes. A ROUTE_RAW_BODY route: the body as sent, in
 * req->raw, whatever its Content-Type.
 */
void
handle_count(const struct request *req, struct reply *rep)
{
	const unsigned char *s = (const unsigned char *)req->raw;
	size_t chars = 0, lines = 0;

	for (size_t i = 0; i < req->raw_len; chars++) {
		size_t n = utf8_seq_len(s + i, req->raw_len - i);

		if (n == 0 || s[i] == '\0') {
			reply_error(rep, 415,
			            "the body must be UTF-8 text "
			            "without NUL bytes");
			return;
		}
		lines += s[i] == '\n';
		i += n;
	}
	reply_json(rep, 200,
	           json_pack("{s:I, s:I, s:I}", "bytes",
	                     (json_int_t)req->raw_len, "characters",
	                     (json_int_t)chars, "lines", (json_int_t)lines));
}
