/* SPDX-License-Identifier: MIT */
/* reply.c -- build replies (JSON and problem details) and render them */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "status.h"
#include "utf8.h"

json_t *
problem_new(unsigned int status, const char *detail)
{
	return json_pack("{s:s, s:s, s:I, s:s}", "type", "about:blank", "title",
	                 status_title(status), "status", (json_int_t)status,
	                 "detail", detail);
}

void
reply_clear(struct reply *rep)
{
	json_decref(rep->body);
	rep->body = NULL;
	rep->problem = 0;
	free(rep->text);
	rep->text = NULL;
	rep->text_len = 0;
}

void
reply_json(struct reply *rep, unsigned int status, json_t *body)
{
	reply_clear(rep);
	if (body == NULL) {
		rep->status = 500;
		rep->body = problem_new(500, "out of memory");
		rep->problem = 1;
		return;
	}
	rep->status = status;
	rep->body = body; /* the reply owns it now */
}

void
reply_text(struct reply *rep, unsigned int status, char *text, size_t len,
           const char *type)
{
	reply_clear(rep);
	if (text == NULL) {
		reply_json(rep, 500, NULL);
		return;
	}
	rep->status = status;
	rep->text = text; /* the reply owns it now */
	rep->text_len = len;
	rep->text_type = type;
}

void
reply_error(struct reply *rep, unsigned int status, const char *fmt, ...)
{
	char raw[512], detail[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* Details quote client input (paths), which need not be UTF-8. */
	utf8_sanitize(detail, sizeof(detail), raw);
	reply_json(rep, status, problem_new(status, detail));
	rep->problem = 1;
}

const char *
reply_content_type(const struct reply *rep)
{
	if (rep->text != NULL)
		return rep->text_type;
	return rep->problem ? "application/problem+json" : "application/json";
}

size_t
reply_render(const struct reply *rep, char *buf, size_t cap)
{
	size_t n;

	if (rep->text != NULL) {
		if (rep->text_len <= cap)
			memcpy(buf, rep->text, rep->text_len);
		return rep->text_len;
	}
	if (rep->body == NULL)
		return 0;
	n = encode_json(rep->body, buf, cap);
	if (n == 0)
		return 0;
	if (n < cap)
		buf[n] = '\n';
	return n + 1;
}
