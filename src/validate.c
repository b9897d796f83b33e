/* SPDX-License-Identifier: MIT */
/* validate.c -- a JSON body against the shape a route accepts, as data */
#include "validate.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "utf8.h"

/* One walk over a body: the errors so far and where it is. */
struct walk {
	json_t *errors; /* the listed ones; NULL until the first */
	size_t count;   /* every one found, listed or not */
	int oom;        /* memory ran out: errors are dropped at the end */
	char *ptr;      /* the current pointer, "#/tags/3"; not NUL-ended */
	size_t len, cap;
	char local[256]; /* ptr until a pointer needs more */
};

/* Room for n more bytes of pointer; 0, or -1 (oom set). */
static int
walk_reserve(struct walk *w, size_t n)
{
	size_t cap = w->cap;
	char *p;

	if (w->len + n <= w->cap)
		return 0;
	while (cap < w->len + n) {
		if (cap > SIZE_MAX / 2)
			goto fail;
		cap *= 2;
	}
	p = w->ptr == w->local ? malloc(cap) : realloc(w->ptr, cap);
	if (p == NULL)
		goto fail;
	if (w->ptr == w->local)
		memcpy(p, w->local, w->len);
	w->ptr = p; /* the walk owns it; freed in validate */
	w->cap = cap;
	return 0;
fail:
	w->oom = 1;
	return -1;
}

/* RFC 3986's fragment characters, past the ones ~0 and ~1 stand for. */
static int
is_fragment_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("-._~!$&'()*+,;=:@?", c) != NULL);
}

/* Appends "/name", escaped; the length before it, for walk_pop. */
static size_t
walk_push_name(struct walk *w, const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t mark = w->len;

	if (walk_reserve(w, 1 + 3 * strlen(name)) != 0)
		return mark;
	w->ptr[w->len++] = '/';
	for (const unsigned char *s = (const unsigned char *)name; *s != '\0';
	     s++) {
		if (*s == '~' || *s == '/') {
			w->ptr[w->len++] = '~';
			w->ptr[w->len++] = *s == '~' ? '0' : '1';
		} else if (is_fragment_char(*s)) {
			w->ptr[w->len++] = (char)*s;
		} else {
			w->ptr[w->len++] = '%';
			w->ptr[w->len++] = hex[*s >> 4];
			w->ptr[w->len++] = hex[*s & 0xf];
		}
	}
	return mark;
}

/* Appends "/index"; the length before it, for walk_pop. */
static size_t
walk_push_index(struct walk *w, size_t index)
{
	char digits[24];
	int n = snprintf(digits, sizeof(digits), "/%zu", index);
	size_t mark = w->len;

	if (n > 0 && walk_reserve(w, (size_t)n) == 0) {
		memcpy(w->ptr + w->len, digits, (size_t)n);
		w->len += (size_t)n;
	}
	return mark;
}

static void
walk_pop(struct walk *w, size_t mark)
{
	w->len = mark;
}

/* Counts an error at the current pointer, and lists it while there is room.
 */
static void
walk_fail(struct walk *w, const char *detail)
{
	json_t *e;

	w->count++;
	if (w->oom)
		return;
	if (w->errors == NULL && (w->errors = json_array()) == NULL) {
		w->oom = 1;
		return;
	}
	if (json_array_size(w->errors) >= VALIDATE_ERRORS_MAX)
		return;
	e = json_pack("{s:s%, s:s}", "pointer", w->ptr, w->len, "detail",
	              detail);
	if (json_array_append_new(w->errors, e) != 0) /* NULL e fails too */
		w->oom = 1;
}

/* "1 to 200 characters", "at most 8 items", "exactly 5 characters". */
static void
bound_text(char *buf, size_t len, const char *verb, size_t min, size_t max,
           const char *one, const char *many)
{
	if (min > 0 && max > 0 && min == max)
		snprintf(buf, len, "must %s exactly %zu %s", verb, min,
		         min == 1 ? one : many);
	else if (min > 0 && max > 0)
		snprintf(buf, len, "must %s %zu to %zu %s", verb, min, max,
		         many);
	else if (max > 0)
		snprintf(buf, len, "must %s at most %zu %s", verb, max,
		         max == 1 ? one : many);
	else
		snprintf(buf, len, "must %s at least %zu %s", verb, min,
		         min == 1 ? one : many);
}

static size_t
count_chars(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t chars = 0;

	for (size_t i = 0; i < n; chars++) {
		size_t k = utf8_seq_len(u + i, n - i);

		i += k > 0 ? k : 1; /* jansson's strings are UTF-8: never 0 */
	}
	return chars;
}

static void
check_string(struct walk *w, const struct validate_field *f, const json_t *v)
{
	size_t bytes = json_string_length(v);
	char detail[96];

	/* Valid JSON ("\u0000") that no C string or SQL text can hold. */
	if (memchr(json_string_value(v), '\0', bytes) != NULL) {
		walk_fail(w, "must not contain U+0000");
		return;
	}
	if (f->min_chars > 0 || f->max_chars > 0) {
		size_t chars = count_chars(json_string_value(v), bytes);

		if (chars < f->min_chars ||
		    (f->max_chars > 0 && chars > f->max_chars)) {
			bound_text(detail, sizeof(detail), "be", f->min_chars,
			           f->max_chars, "character", "characters");
			walk_fail(w, detail);
		}
	}
	if (f->max_bytes > 0 && bytes > f->max_bytes) {
		bound_text(detail, sizeof(detail), "be", 0, f->max_bytes,
		           "byte", "bytes");
		walk_fail(w, detail);
	}
}

static void
check_integer(struct walk *w, const struct validate_field *f, const json_t *v)
{
	json_int_t i = json_integer_value(v);
	char detail[96];

	if (f->min_int == 0 && f->max_int == 0)
		return;
	if (i >= f->min_int && i <= f->max_int)
		return;
	if (f->max_int == LLONG_MAX)
		snprintf(detail, sizeof(detail), "must be at least %lld",
		         (long long)f->min_int);
	else if (f->min_int == LLONG_MIN)
		snprintf(detail, sizeof(detail), "must be at most %lld",
		         (long long)f->max_int);
	else
		snprintf(detail, sizeof(detail), "must be %lld to %lld",
		         (long long)f->min_int, (long long)f->max_int);
	walk_fail(w, detail);
}

static void check_object(struct walk *w, const struct validate_shape *shape,
                         json_t *obj, enum validate_mode mode);

/* v (not null) as the row f describes, with type for its own (an item's). */
static void
check_value(struct walk *w, const struct validate_field *f,
            enum validate_type type, int item, json_t *v,
            enum validate_mode mode)
{
	size_t i, n;
	json_t *it;
	char detail[96];

	switch (type) {
	case VALIDATE_STRING:
		if (!json_is_string(v))
			walk_fail(w, "must be a string");
		else
			check_string(w, f, v);
		return;
	case VALIDATE_INTEGER:
		if (!json_is_integer(v))
			walk_fail(w, "must be an integer");
		else
			check_integer(w, f, v);
		return;
	case VALIDATE_NUMBER:
		if (!json_is_number(v))
			walk_fail(w, "must be a number");
		return;
	case VALIDATE_BOOLEAN:
		if (!json_is_boolean(v))
			walk_fail(w, "must be a boolean");
		return;
	case VALIDATE_OBJECT:
		if (!json_is_object(v))
			walk_fail(w, "must be an object");
		else if (f->shape != NULL)
			check_object(w, f->shape, v, mode);
		return;
	case VALIDATE_ARRAY:
		break;
	}
	if (!json_is_array(v)) {
		walk_fail(w, "must be an array");
		return;
	}
	if (item) /* an array in an array: no deeper */
		return;
	n = json_array_size(v);
	if (n < f->min_items || (f->max_items > 0 && n > f->max_items)) {
		bound_text(detail, sizeof(detail), "have", f->min_items,
		           f->max_items, "item", "items");
		walk_fail(w, detail);
	}
	json_array_foreach(v, i, it)
	{
		size_t mark = walk_push_index(w, i);

		if (json_is_null(it))
			walk_fail(w, "must not be null");
		else /* a patch replaces an array: its items are whole */
			check_value(w, f, f->items, 1, it, VALIDATE_WHOLE);
		walk_pop(w, mark);
	}
}

static int
shape_knows(const struct validate_shape *shape, const char *name)
{
	for (size_t i = 0; i < shape->n_fields; i++)
		if (strcmp(shape->fields[i].name, name) == 0)
			return 1;
	return 0;
}

static void
check_object(struct walk *w, const struct validate_shape *shape, json_t *obj,
             enum validate_mode mode)
{
	const char *key;
	json_t *v;

	for (size_t i = 0; i < shape->n_fields; i++) {
		const struct validate_field *f = &shape->fields[i];
		int required = (f->flags & VALIDATE_REQUIRED) != 0;
		size_t mark = walk_push_name(w, f->name);

		v = json_object_get(obj, f->name);
		if (v == NULL) {
			if (required && mode == VALIDATE_WHOLE)
				walk_fail(w, "is required");
		} else if (json_is_null(v)) {
			/* In a patch null removes, which a required field
			 * may not be. */
			if (mode == VALIDATE_MERGE_PATCH
			        ? required
			        : (f->flags & VALIDATE_NULLABLE) == 0)
				walk_fail(w, "must not be null");
		} else {
			check_value(w, f, f->type, 0, v, mode);
		}
		walk_pop(w, mark);
	}
	json_object_foreach(obj, key, v)
	{
		if (!shape_knows(shape, key)) {
			size_t mark = walk_push_name(w, key);

			walk_fail(w, "is not a known field");
			walk_pop(w, mark);
		}
	}
}

size_t
validate(const struct validate_shape *shape, json_t *body,
         enum validate_mode mode, json_t **errors)
{
	struct walk w = {0};

	w.ptr = w.local;
	w.cap = sizeof(w.local);
	w.ptr[w.len++] = '#';
	if (!json_is_object(body))
		walk_fail(&w, "must be an object");
	else
		check_object(&w, shape, body, mode);
	if (w.ptr != w.local)
		free(w.ptr);
	if (w.oom) {
		json_decref(w.errors);
		w.errors = NULL;
	}
	*errors = w.errors; /* the caller's now */
	return w.count;
}

void
validate_reply(struct reply *rep, json_t *errors, size_t count)
{
	char detail[96];
	json_t *p;

	if (errors == NULL) {
		reply_json(rep, 500, NULL);
		return;
	}
	if (count > json_array_size(errors))
		snprintf(detail, sizeof(detail),
		         "the body does not fit: %zu errors, the first %zu "
		         "listed",
		         count, json_array_size(errors));
	else
		snprintf(detail, sizeof(detail),
		         "the body does not fit: %zu error%s", count,
		         count == 1 ? "" : "s");
	p = problem_new(422, detail);
	if (p != NULL && json_object_set_new(p, "errors", errors) != 0) {
		json_decref(p); /* errors was released by set_new */
		p = NULL;
	} else if (p == NULL) {
		json_decref(errors);
	}
	reply_json(rep, 422, p); /* NULL: a 500 */
	rep->problem = 1;
}

int
validate_body(const struct validate_shape *shape, json_t *body,
              enum validate_mode mode, struct reply *rep)
{
	json_t *errors = NULL;
	size_t n = validate(shape, body, mode, &errors);

	if (n == 0)
		return 0;
	validate_reply(rep, errors, n); /* takes errors over */
	return -1;
}
