/* SPDX-License-Identifier: MIT */
/*
 * head.c -- what 0.9.75's parser hides in a request head, found from where
 * it left the bytes: folded fields, NUL bytes, a head cut short
 */
#include "internal.h"

#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* Header fields checked from the stack; a request with more uses the heap. */
#define FIELDS_STACK 32

/* Collects a request's header or trailer fields for the policy. */
struct field_list {
	struct policy_field *fields;
	size_t n, cap;
	const char *last; /* where the last field's value ends */
	int nul_in_value; /* bytes hide behind a NUL before the last field */
	uintptr_t head_lo, head_hi; /* for trailers: where the head lies */
};

/*
 * libmicrohttpd 0.9.75 parses a field in place: "Name: value" becomes
 * "Name\0 value", the value a few bytes after the name. An obs-fold line is
 * glued onto the *name*, which the library then copies to a new block of the
 * connection's pool, away from its value (src/microhttpd/connection.c,
 * process_broken_line). So a field whose value does not follow its name
 * across a NUL and blanks was folded.
 */
static int
is_folded(const char *key, size_t key_size, const char *value)
{
	uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;

	if (value == NULL)
		return 0;
	if (v <= k + key_size || key[key_size] != '\0')
		return 1;
	for (const char *p = key + key_size + 1; p < value; p++)
		if (*p != ' ' && *p != '\t')
			return 1;
	return 0;
}

static enum MHD_Result
add_field(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
          const char *value, size_t value_size)
{
	struct field_list *l = cls;

	/*
	 * A trailer line that arrives in pieces makes 0.9.75 file the head's
	 * last field again, as a trailer (connection.c, FOOTER_PART_RECEIVED
	 * with a stale 'last'): a trailer that lies in the head is that.
	 */
	if (kind == MHD_FOOTER_KIND && (uintptr_t)key >= l->head_lo &&
	    (uintptr_t)key < l->head_hi)
		return MHD_YES;
	if (l->n == l->cap)
		return MHD_NO; /* counted beforehand: cannot happen */
	l->fields[l->n].name = key;
	l->fields[l->n].value = value;
	l->fields[l->n].folded = is_folded(key, key_size, value);
	/*
	 * In place, a field's line ends one or two NULs (LF, CRLF) before
	 * the next name; a NUL the client sent inside a value ends the value
	 * early, and the rest of that line hides in between.
	 */
	if (l->n > 0 && !l->fields[l->n].folded &&
	    (uintptr_t)key > (uintptr_t)l->last &&
	    (uintptr_t)key - (uintptr_t)l->last <= 2 + VALUE_HIDE_MAX) {
		size_t gap = (uintptr_t)key - (uintptr_t)l->last;

		for (size_t i = 0; i < gap; i++)
			l->nul_in_value |= l->last[i] != '\0';
		l->nul_in_value |= gap > 2;
	}
	l->last = value != NULL ? value + value_size : key + key_size;
	l->n++;
	return MHD_YES;
}

/*
 * A line that starts with a colon, after another field, ends the header
 * section in libmicrohttpd 0.9.75: process_header_line() cuts the line at its
 * colon and the parser takes the empty rest for the blank line, so the
 * fields after it are read as the next request. The head lies in one buffer
 * from the method on, header_size bytes long, each CR and LF turned into a
 * NUL: after the end of the last field there may be nothing but the NULs of
 * its line end and of the blank line (2 to 4 bytes). end is where the last
 * field's value (or, with no fields, the version) ends.
 */
static const char *
head_cut_short(struct MHD_Connection *conn, const char *method, const char *end)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	uintptr_t start = (uintptr_t)method, p = (uintptr_t)end;
	size_t left;
	int clean = 1;

	if (ci == NULL)
		return NULL;
	if (p < start || p > start + ci->header_size)
		return NULL; /* not in one buffer: cannot tell */
	/* In the head's buffer: end[0 .. left) is the rest of the head. */
	left = start + ci->header_size - p;
	for (size_t i = 0; i < left; i++)
		clean &= end[i] == '\0';
	if (clean && left <= 4)
		return NULL;
	/* A NUL in the last value and a line the library took for the end
	 * of the head look alike from here. */
	return "a NUL byte, or a line that starts with a colon, at the end of "
	       "the header section";
}

/*
 * The policy's verdict on the fields of one kind (headers or trailers).
 * framing is filled for headers and NULL for trailers.
 */
struct policy_verdict
check_fields(struct MHD_Connection *conn, enum MHD_ValueKind kind,
             const char *method, const char *version,
             struct policy_framing *framing)
{
	struct policy_field stack[FIELDS_STACK];
	struct field_list l = {stack, 0, FIELDS_STACK, NULL, 0, 0, 0};
	struct policy_verdict v = {500, "out of memory checking the headers"};
	int n = MHD_get_connection_values_n(conn, kind, NULL, NULL);

	if (kind == MHD_FOOTER_KIND) { /* where the head lies: see add_field */
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		    conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

		if (ci != NULL) {
			l.head_lo = (uintptr_t)method;
			l.head_hi = l.head_lo + ci->header_size;
		}
	}
	if (n < 0)
		return v;
	if ((size_t)n > FIELDS_STACK) {
		l.fields = calloc((size_t)n, sizeof(*l.fields));
		if (l.fields == NULL)
			return v;
		l.cap = (size_t)n;
	}
	MHD_get_connection_values_n(conn, kind, add_field, &l);
	if (framing != NULL)
		v = policy_check_head(version, l.fields, l.n, framing);
	else
		v = policy_check_trailers(l.fields, l.n);
	if (v.status == 0 && l.nul_in_value) {
		v.status = 400;
		v.detail = "a NUL byte in a header field value";
	}
	if (v.status == 0 && framing != NULL) {
		const char *cut = head_cut_short(
		    conn, method, l.n > 0 ? l.last : version + strlen(version));

		if (cut != NULL) {
			v.status = 400;
			v.detail = cut;
		}
	}
	if (l.fields != stack)
		free(l.fields);
	return v;
}
