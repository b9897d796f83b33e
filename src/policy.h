/* SPDX-License-Identifier: MIT */
/*
 * policy.h -- what a request may be: the rules over its head, target and
 * trailers that libmicrohttpd 0.9.75 leaves to the application; no
 * libmicrohttpd
 */
#ifndef MICROD_POLICY_H
#define MICROD_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* One header or trailer field as the library stored it. */
struct policy_field {
	const char *name, *value; /* value may be NULL: taken as "" */
	int folded; /* the library glued an obs-fold line onto it */
};

/*
 * status 0 accepts; anything else refuses the request with that status and
 * detail (a static string naming the rule), and the connection is closed:
 * after a refused head nothing that follows can be trusted to be a request.
 */
struct policy_verdict {
	unsigned int status;
	const char *detail;
};

/* What an accepted head says about the body. */
struct policy_framing {
	int chunked;      /* Transfer-Encoding: chunked */
	int sized;        /* a Content-Length was given */
	uintmax_t length; /* its value, when sized */
};

/*
 * The header fields of a request with this version ("HTTP/1.0" or
 * "HTTP/1.1"): no obs-fold, every name a token, no bare CR in a value, one
 * valid Host (required in HTTP/1.1), no framing header that is ambiguous,
 * duplicated or extended. Fills *framing when accepted.
 */
struct policy_verdict policy_check_head(const char *version,
                                        const struct policy_field *fields,
                                        size_t n,
                                        struct policy_framing *framing);

/* The trailer fields of a chunked body. */
struct policy_verdict policy_check_trailers(const struct policy_field *fields,
                                            size_t n);

/*
 * The raw request target as the client sent it. Writes its path,
 * percent-decoded, into path (room for strlen(target) + 2 bytes is always
 * enough); an absolute-form target ("http://host/x?y") gives its path. Refuses
 * a space anywhere, an invalid authority, bad percent-encoding, a control
 * byte in the path, raw or decoded, and a raw control byte or a %00 in the
 * query.
 */
struct policy_verdict policy_decode_target(const char *target, char *path,
                                           size_t len);

/*
 * What parsing a JSON body of len bytes may cost: at most 64 values plus one
 * per POLICY_JSON_BYTES_PER_VALUE bytes. jansson keeps about 48 bytes per
 * value, so a body of "[0,0,0,...]" (a value every 2 bytes) would cost 24
 * times its size. Counts values without parsing (commas, colons and
 * openings outside strings); 0 within the bound, else 413 with a detail.
 */
#define POLICY_JSON_BYTES_PER_VALUE 8
struct policy_verdict policy_json_cost(const char *body, size_t len);

/*
 * Percent-decodes the n bytes at s into out, which has room for cap bytes
 * ('+' is not special; nothing is NUL-terminated). Returns the decoded
 * length, which may pass cap (out then holds its first cap bytes), or -1 for
 * a '%' not followed by two hex digits.
 */
long policy_percent_decode(const char *s, size_t n, char *out, size_t cap);

/* Whether s is an RFC 9110 token (a header field name, a method). */
int policy_is_token(const char *s);

/*
 * Where the path starts in a raw target: the target itself, or, in an
 * absolute-form one ("http://host/x"), after the authority (which may leave
 * "" or "?y": no path).
 */
const char *policy_target_path(const char *target);

/* The end of the path in a raw target: its '?' or its NUL. */
const char *policy_target_path_end(const char *target);

#endif
