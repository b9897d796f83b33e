/* SPDX-License-Identifier: MIT */
/* validate.h -- a JSON body against the shape a route accepts, as data */
#ifndef MICROD_VALIDATE_H
#define MICROD_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

#include "request.h"

enum validate_type {
	VALIDATE_STRING,
	VALIDATE_INTEGER, /* a JSON number without a fraction or exponent */
	VALIDATE_NUMBER,  /* any JSON number; no bounds */
	VALIDATE_BOOLEAN,
	VALIDATE_ARRAY,  /* of .items, each held to the row's bounds */
	VALIDATE_OBJECT, /* held to .shape */
};

/* A field's flags. */
#define VALIDATE_REQUIRED 0x1u /* present in a whole body; never null */
#define VALIDATE_NULLABLE 0x2u /* null is a value in a whole body */

struct validate_shape;

/*
 * One field a body may carry. A bound of 0 is no bound; min_int and max_int
 * both 0 is any integer, and LLONG_MIN or LLONG_MAX leave one side open.
 * Strings are counted in Unicode code points (not graphemes) by
 * min_chars/max_chars, in UTF-8 bytes by max_bytes. An array's item bounds
 * are the row's own: a VALIDATE_ARRAY of VALIDATE_STRING items uses
 * min_chars, max_chars and max_bytes for each item, and min_items and
 * max_items for the array. Items that are arrays are checked to be arrays,
 * no deeper.
 */
struct validate_field {
	const char *name;
	enum validate_type type;
	unsigned int flags;
	enum validate_type items; /* VALIDATE_ARRAY: the items' type */
	size_t min_items, max_items;
	size_t min_chars, max_chars;
	size_t max_bytes;
	json_int_t min_int, max_int;
	const struct validate_shape *shape; /* objects, and items that are */
};

/* The fields of an object, in the order their errors are listed. */
struct validate_shape {
	const struct validate_field *fields;
	size_t n_fields;
};

/* A shape from a static array of rows. */
#define VALIDATE_SHAPE(rows)                                                   \
	{                                                                      \
		(rows), sizeof(rows) / sizeof((rows)[0])                       \
	}

enum validate_mode {
	VALIDATE_WHOLE, /* POST or PUT: the body is the whole resource */
	/* PATCH as a JSON Merge Patch (RFC 7396): every field may be left
	 * out, and null removes an optional field (a required one: an
	 * error). Nested objects are patches too; arrays are replaced, so
	 * their items are whole. */
	VALIDATE_MERGE_PATCH,
};

/* Most errors one reply lists; the rest are only counted. */
#define VALIDATE_ERRORS_MAX 100

/*
 * Checks body (not changed; not const only because jansson's object
 * iterators are not) against shape. Returns the number of errors, 0 when it
 * fits (*errors NULL). Else *errors is a new array, the caller's, of the
 * first VALIDATE_ERRORS_MAX as {"pointer": "#/tags/3", "detail": "must be 1
 * to 32 characters"}, or NULL when memory ran out. Order: the shape's rows,
 * each with its nested errors, then fields the shape does not know in the
 * body's order (jansson keeps the order of the text). A body that is not an
 * object is one error at "#". Pointers are RFC 6901 URI fragments: '~' is
 * ~0 and '/' is ~1 in a name, then each byte a fragment may not hold (a
 * space, '%', '"', '#', '\', '^', '|', controls, and every byte of a
 * non-ASCII character in UTF-8) is %XX in upper case: "café" is
 * "#/caf%C3%A9". A detail names the rule: "is required", "must be a
 * string", "must be 1 to 200 characters", "must be at most 4096 bytes",
 * "must have at most 8 items", "must be 1 to 100", "must not be null",
 * "is not a known field".
 */
size_t validate(const struct validate_shape *shape, json_t *body,
                enum validate_mode mode, json_t **errors);

/*
 * A 422 problem details reply listing errors (taken over) as its "errors"
 * member, its detail "the body does not fit: 3 errors" (", the first 100
 * listed" when count is more). NULL errors (out of memory) make it a 500.
 */
void validate_reply(struct reply *rep, json_t *errors, size_t count);

/*
 * validate and, when the body does not fit, validate_reply: 0 when it fits,
 * else -1 with rep set. A handler's one line:
 * if (validate_body(&note_shape, req->body, VALIDATE_WHOLE, rep) != 0)
 *	return;
 */
int validate_body(const struct validate_shape *shape, json_t *body,
                  enum validate_mode mode, struct reply *rep);

#endif
