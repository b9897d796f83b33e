/* SPDX-License-Identifier: MIT */
/* reply.h -- build replies and render them to bytes */
#ifndef MICROD_REPLY_H
#define MICROD_REPLY_H

#include <stddef.h>

#include "request.h"

/*
 * Sets status and body; the reply takes body over. A NULL body (jansson's
 * answer to running out of memory) turns the reply into a 500, so handlers
 * need no out-of-memory branches.
 */
void reply_json(struct reply *rep, unsigned int status, json_t *body);

/* Sets an RFC 9457 problem-details reply with a printf-style detail. */
void reply_error(struct reply *rep, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Sets a non-JSON reply: the reply takes text (malloc'd) over. A NULL text
 * turns it into a 500, as with reply_json.
 */
void reply_text(struct reply *rep, unsigned int status, char *text, size_t len,
                const char *type);

/* Releases the body; the reply can be filled again (its headers stay). */
void reply_clear(struct reply *rep);

/* Releases the body and the headers: the reply is empty. */
void reply_release(struct reply *rep);

/* Bounds of one reply_header field, and of all of one reply's (names and
 * values): libmicrohttpd builds the head in the connection's memory. */
#define REPLY_NAME_MAX 64
#define REPLY_VALUE_MAX 1024
#define REPLY_HEADERS_BYTES 2048

/*
 * Adds "name: value" to the reply (copied). Refused, with a warning logged
 * and -1, when name is not a token, value holds a CR, LF or another control
 * byte (a tab is fine), value is empty, either is too long, the reply has
 * REPLY_HEADERS_MAX or REPLY_HEADERS_BYTES already, or name is one microd
 * writes itself (Content-Type, Content-Length,
 * Connection, Date, Transfer-Encoding, X-Request-Id, Keep-Alive, Upgrade,
 * Trailer, RateLimit, RateLimit-Policy). A Cache-Control of the handler's
 * replaces microd's "no-store", a Retry-After replaces retry_after; other names
 * may repeat (Set-Cookie). 0 when added.
 */
int reply_header(struct reply *rep, const char *name, const char *value);

/* Whether the reply carries a header of that name (any case). */
int reply_has_header(const struct reply *rep, const char *name);

/* {"type":"about:blank","title":...,"status":...,"detail":...}; NULL on ENOMEM
 */
json_t *problem_new(unsigned int status, const char *detail);

const char *reply_content_type(const struct reply *rep);

/*
 * Serialises the body (a JSON body followed by a newline, or the text as it
 * is) into buf, and the length the whole needs into *len: 0 for an empty
 * text, a valid reply. When *len exceeds cap, buf holds nothing useful and
 * the caller retries with a larger buffer. 0, or -1 when there is no body
 * or it cannot be serialised.
 */
int reply_render(const struct reply *rep, char *buf, size_t cap, size_t *len);

#endif
