/* SPDX-License-Identifier: MIT */
/*
 * policy.c -- what a request may be: the RFC 9110/9112 rules that
 * libmicrohttpd 0.9.75 leaves to the application, as pure functions
 *
 * Why each rule exists (all reproduced against 0.9.75 under
 * MHD_OPTION_STRICT_FOR_CLIENT=1; tests/hostile.py pins them on the wire):
 * - The library keeps a header name as it arrives up to the colon, spaces,
 *   control bytes and all, so "Transfer-Encoding : chunked" is not a
 *   Transfer-Encoding header to it, and a body framed by a Content-Length
 *   beside it carries a second, smuggled request. Every name must be a token.
 * - obs-fold (a line starting with SP or HTAB) is glued onto the previous
 *   field's *name*, without the whitespace: "Content-Length: 2" + " 0" becomes
 *   a field named "Content-Length0" whose value is "2", and "Content-: 35" +
 *   " Length" a Content-Length nobody sent. src/server/head.c tells a folded
 * field by where the library put it and marks it; every fold is refused. A name
 * that starts with a framing header's name and goes on is refused as well.
 * - The target reaches the application percent-decoded, so "%00" ends the
 *   path early ("/metrics%00.css" becomes "/metrics"). microd decodes the raw
 *   target itself and refuses control bytes.
 */
#include "policy.h"

#include <string.h>
#include <strings.h>

#include "number.h"

static const struct policy_verdict accept = {0, NULL};

static const char folded_detail[] =
    "obs-fold: a header field continued on the next line";

static struct policy_verdict
refuse(unsigned int status, const char *detail)
{
	struct policy_verdict v = {status, detail};

	return v;
}

/* An ASCII letter or digit, or one of extra. */
static int
is_alnum_or(unsigned char c, const char *extra)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr(extra, c) != NULL;
}

/* RFC 9110 5.6.2: tchar = "!#$%&'*+-.^_`|~", DIGIT, ALPHA. */
static int
is_tchar(unsigned char c)
{
	return is_alnum_or(c, "!#$%&'*+-.^_`|~");
}

static int
is_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!is_tchar((unsigned char)*s))
			return 0;
	return 1;
}

/* RFC 3986: unreserved and sub-delims, what a reg-name may hold. */
static int
is_host_char(unsigned char c)
{
	return is_alnum_or(c, "-._~!$&'()*+,;=");
}

static int hex_value(unsigned char c);

/*
 * RFC 9110 7.2 and RFC 3986 3.2.2: uri-host [":" port], where uri-host is a
 * reg-name (percent-encoding allowed), an IPv4 address or an IP literal in
 * brackets. Empty is valid (a target without an authority). No userinfo.
 */
static int
is_authority(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '[') {
		for (i = 1; i < n && s[i] != ']'; i++)
			if (!is_host_char((unsigned char)s[i]) && s[i] != ':')
				return 0;
		if (i == n)
			return 0;
		i++;
	} else {
		while (i < n && s[i] != ':') {
			if (s[i] == '%') {
				if (i + 2 >= n ||
				    hex_value((unsigned char)s[i + 1]) < 0 ||
				    hex_value((unsigned char)s[i + 2]) < 0)
					return 0;
				i += 3;
				continue;
			}
			if (!is_host_char((unsigned char)s[i]))
				return 0;
			i++;
		}
	}
	if (i == n)
		return 1;
	if (s[i++] != ':')
		return 0;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/*
 * The length of a value without its trailing blanks: RFC 9110 5.5 leaves
 * whitespace around a value out of it, and 0.9.75 strips only the leading.
 */
static size_t
value_len(const char *v)
{
	size_t n = strlen(v);

	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n;
}

/* The fields whose meaning frames or routes the message. */
static const char *const framing_names[] = {"Content-Length",
                                            "Transfer-Encoding", "Host"};

#define N_FRAMING (sizeof(framing_names) / sizeof(framing_names[0]))

/* Which framing field name is exactly name (its index), or -1. */
static int
framing_index(const char *name)
{
	for (size_t i = 0; i < N_FRAMING; i++)
		if (strcasecmp(name, framing_names[i]) == 0)
			return (int)i;
	return -1;
}

/* A name that starts with a framing field's name and goes on. */
static int
extends_framing_name(const char *name)
{
	for (size_t i = 0; i < N_FRAMING; i++) {
		size_t n = strlen(framing_names[i]);

		if (strncasecmp(name, framing_names[i], n) == 0 &&
		    name[n] != '\0')
			return 1;
	}
	return 0;
}

/* The checks every field gets, in a head or a trailer section. */
static struct policy_verdict
check_field(const struct policy_field *f)
{
	const char *name = f->name;

	if (f->folded)
		return refuse(400, folded_detail);
	/* RFC 9112 2.2: a bare CR must be refused or replaced. */
	if (f->value != NULL && strchr(f->value, '\r') != NULL)
		return refuse(400, "a CR in a header field value");
	if (!is_token(name))
		return refuse(400, "invalid header field name");
	if (extends_framing_name(name))
		return refuse(400, "header field name extends a framing "
		                   "header's name (obs-fold?)");
	return accept;
}

struct policy_verdict
policy_check_head(const char *version, const struct policy_field *fields,
                  size_t n, struct policy_framing *framing)
{
	unsigned int hosts = 0, lengths = 0, encodings = 0;
	const char *length = NULL, *encoding = NULL;
	int lengths_differ = 0;

	memset(framing, 0, sizeof(*framing));
	for (size_t i = 0; i < n; i++) {
		const char *value = fields[i].value ? fields[i].value : "";
		struct policy_verdict v = check_field(&fields[i]);

		if (v.status != 0)
			return v;
		switch (framing_index(fields[i].name)) {
		case 0:
			if (lengths++ == 0)
				length = value;
			else if (strcmp(value, length) != 0)
				lengths_differ = 1;
			break;
		case 1:
			encodings++;
			encoding = value;
			break;
		case 2:
			hosts++;
			if (!is_authority(value, value_len(value)))
				return refuse(400, "invalid Host header");
			break;
		default:
			break;
		}
	}
	if (hosts > 1)
		return refuse(400, "more than one Host header");
	if (hosts == 0 && strcmp(version, "HTTP/1.0") != 0)
		return refuse(400, "an HTTP/1.1 request without Host");
	if (encodings > 0 && lengths > 0)
		return refuse(400, "both Content-Length and Transfer-Encoding");
	if (lengths_differ)
		return refuse(400, "Content-Length headers that differ");
	if (encodings > 0 && strcmp(version, "HTTP/1.0") == 0)
		return refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
	/* Exactly as libmicrohttpd reads it: "chunked " is not chunked to
	 * it, so it must not be to the policy either. */
	if (encodings > 1 ||
	    (encodings == 1 && strcasecmp(encoding, "chunked") != 0))
		return refuse(501, "only the chunked transfer coding is "
		                   "supported");
	if (lengths > 0) {
		if (number_parse(length, UINTMAX_MAX, &framing->length) != 0)
			return refuse(400, "invalid Content-Length");
		framing->sized = 1;
	}
	framing->chunked = encodings == 1;
	return accept;
}

struct policy_verdict
policy_check_trailers(const struct policy_field *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct policy_verdict v = check_field(&fields[i]);

		if (v.status != 0)
			return v;
		/* RFC 9110 6.5.1: never used for framing or routing. */
		if (framing_index(fields[i].name) >= 0)
			return refuse(400, "a framing header in the trailer "
			                   "section");
	}
	return accept;
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

const char *
policy_target_path_end(const char *target)
{
	return target + strcspn(target, "?");
}

/*
 * Where the path of an absolute-form target starts ("http://h/x" -> "/x");
 * *authority and *len are set to its authority ("h"), else to "" and 0.
 */
static const char *
path_start(const char *target, const char **authority, size_t *len)
{
	const char *p = NULL;

	*authority = "";
	*len = 0;
	if (strncasecmp(target, "http://", 7) == 0)
		p = target + 7;
	else if (strncasecmp(target, "https://", 8) == 0)
		p = target + 8;
	if (p == NULL)
		return target;
	*authority = p;
	*len = strcspn(p, "/?");
	return p + *len;
}

int
policy_is_token(const char *s)
{
	return is_token(s);
}

long
policy_percent_decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t got = 0;

	if (memchr(s, '%', n) == NULL) { /* nothing to decode: most paths */
		memcpy(out, s, n < cap ? n : cap);
		return (long)n;
	}
	for (size_t i = 0; i < n; i++, got++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			int hi =
			    i + 2 < n ? hex_value((unsigned char)s[i + 1]) : -1;
			int lo =
			    hi < 0 ? -1 : hex_value((unsigned char)s[i + 2]);

			if (lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (got < cap)
			out[got] = (char)c;
	}
	return (long)got;
}

const char *
policy_target_path(const char *target)
{
	const char *authority;
	size_t alen;

	if (target[0] == '/')
		return target; /* origin-form, nearly always */
	return path_start(target, &authority, &alen);
}

struct policy_verdict
policy_decode_target(const char *target, char *path, size_t len)
{
	const char *end = policy_target_path_end(target), *authority;
	size_t out = 0, alen;
	long got;
	const char *p = path_start(target, &authority, &alen);

	if (len < 2)
		return refuse(500, "no room to decode the request target");
	/* libmicrohttpd finds the version from the end of the line, so a
	 * space may be left inside the target. */
	if (strchr(target, ' ') != NULL)
		return refuse(400, "a space in the request target");
	if (!is_authority(authority, alen) || (p != target && alen == 0))
		return refuse(400, "invalid authority in the request target");
	if (*p != '/' && p != target)
		path[out++] = '/'; /* "http://host" and "http://host?x" */
	got =
	    policy_percent_decode(p, (size_t)(end - p), path + out, len - out);
	if (got < 0)
		return refuse(400, "malformed percent-encoding in the request "
		                   "target");
	if ((size_t)got >= len - out)
		return refuse(500, "no room to decode the request target");
	for (long i = 0; i < got; i++)
		if (is_control((unsigned char)path[out + (size_t)i]))
			return refuse(400, "a control byte in the request "
			                   "path");
	out += (size_t)got;
	path[out] = '\0';
	for (p = end; *p != '\0'; p++) {
		if (is_control((unsigned char)*p) ||
		    (p[0] == '%' && p[1] == '0' && p[2] == '0'))
			return refuse(400, "a control byte or %00 in the "
			                   "query string");
	}
	return accept;
}

struct policy_verdict
policy_json_cost(const char *body, size_t len)
{
	size_t values = 0, allowed = 64 + len / POLICY_JSON_BYTES_PER_VALUE;
	int in_str = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = body[i];

		if (in_str) {
			if (ch == '\\')
				i++; /* the escaped byte cannot end the string
				      */
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		if (ch == '"')
			in_str = 1;
		else if (ch == ',' || ch == ':' || ch == '[' || ch == '{')
			values++;
	}
	if (values > allowed)
		return refuse(413, "the JSON body holds more values than its "
		                   "size allows (one per 8 bytes, plus 64)");
	return accept;
}
