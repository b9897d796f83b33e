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

/* Releases the body; the reply can be filled again. */
void reply_clear(struct reply *rep);

/* {"type":"about:blank","title":...,"status":...,"detail":...}; NULL on ENOMEM
 */
json_t *problem_new(unsigned int status, const char *detail);

const char *reply_content_type(const struct reply *rep);

/*
 * Serialises the body, followed by a newline, into buf. Returns the length
 * the whole text needs: when that exceeds cap, buf holds nothing useful and
 * the caller retries with a larger buffer. Returns 0 on failure.
 */
size_t reply_render(const struct reply *rep, char *buf, size_t cap);

#endif
