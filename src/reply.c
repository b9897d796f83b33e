/* SPDX-License-Identifier: MIT */
/* reply.c -- build replies (JSON and problem details) and render them */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "encode.h"
#include "log.h"
#include "policy.h"
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
reply_release(struct reply *rep)
{
	reply_clear(rep);
	for (size_t i = 0; i < rep->n_headers; i++)
		free(rep->headers[i].name); /* the value shares its block */
	rep->n_headers = 0;
}

/* Fields microd itself writes, or that only the framing may decide. */
static const char *const reserved[] = {
    "Connection",        "Content-Length", "Content-Type",     "Date",
    "Transfer-Encoding", "X-Request-Id",   "Keep-Alive",       "Upgrade",
    "Trailer",           "RateLimit",      "RateLimit-Policy",
};

/* NULL when name: value may go into a reply, else why not. */
static const char *
header_fault(const struct reply *rep, const char *name, const char *value)
{
	if (name == NULL || value == NULL)
		return "no name or no value";
	if (!policy_is_token(name) || strlen(name) > REPLY_NAME_MAX)
		return "the name is not a token of at most 64 bytes";
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return "microd writes this field itself";
	if (strlen(value) > REPLY_VALUE_MAX)
		return "the value is longer than 1024 bytes";
	if (value[0] == '\0')
		return "an empty value (libmicrohttpd 0.9.75 refuses one)";
	for (const char *p = value; *p != '\0'; p++)
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			return "a CR, LF or other control byte in the value";
	if (rep->n_headers == REPLY_HEADERS_MAX)
		return "more than REPLY_HEADERS_MAX fields";
	{
		size_t total = strlen(name) + strlen(value);

		for (size_t i = 0; i < rep->n_headers; i++)
			total += strlen(rep->headers[i].name) +
			         strlen(rep->headers[i].value);
		if (total > REPLY_HEADERS_BYTES)
			return "the fields would pass REPLY_HEADERS_BYTES";
	}
	return NULL;
}

int
reply_header(struct reply *rep, const char *name, const char *value)
{
	const char *why = header_fault(rep, name, value);
	size_t nl, vl;
	char *block;

	if (why != NULL) {
		log_warn("%s: %s left out: %s", __func__,
		         name != NULL && policy_is_token(name) ? name
		                                               : "a field",
		         why);
		return -1;
	}
	nl = strlen(name);
	vl = strlen(value);
	block = malloc(nl + vl + 2);
	if (block == NULL) {
		log_warn("%s: %s left out: out of memory", __func__, name);
		return -1;
	}
	memcpy(block, name, nl + 1);
	memcpy(block + nl + 1, value, vl + 1);
	rep->headers[rep->n_headers].name = block; /* the reply owns it */
	rep->headers[rep->n_headers].value = block + nl + 1;
	rep->n_headers++;
	return 0;
}

int
reply_has_header(const struct reply *rep, const char *name)
{
	for (size_t i = 0; i < rep->n_headers; i++)
		if (strcasecmp(rep->headers[i].name, name) == 0)
			return 1;
	return 0;
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

int
reply_render(const struct reply *rep, char *buf, size_t cap, size_t *len)
{
	size_t n;

	if (rep->text != NULL) {
		if (rep->text_len <= cap && rep->text_len > 0)
			memcpy(buf, rep->text, rep->text_len);
		*len = rep->text_len;
		return 0;
	}
	if (rep->body == NULL)
		return -1;
	n = encode_json(rep->body, buf, cap);
	if (n == 0) /* JSON is never empty: a failure */
		return -1;
	if (n < cap)
		buf[n] = '\n';
	*len = n + 1;
	return 0;
}
