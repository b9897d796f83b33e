/* SPDX-License-Identifier: MIT */
/*
 * notes.c -- /notes, the example resource on PostgreSQL: the body checked
 * against a shape, one bound statement of src/app/statements.c per request,
 * and the note's version as its ETag, held to If-Match
 */
#include "handlers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "number.h"
#include "reply.h"
#include "statements.h"
#include "validate.h"

/* POST's whole note; PATCH's merge patch of it. */
static const struct validate_field note_fields[] = {
    {.name = "title",
     .type = VALIDATE_STRING,
     .flags = VALIDATE_REQUIRED,
     .min_chars = 1,
     .max_chars = 200},
    {.name = "body", .type = VALIDATE_STRING, .max_bytes = 4096},
    {.name = "tags",
     .type = VALIDATE_ARRAY,
     .items = VALIDATE_STRING,
     .max_items = 8,
     .min_chars = 1,
     .max_chars = 32},
};
static const struct validate_shape note_shape = VALIDATE_SHAPE(note_fields);

#define ST(name) (&app_statements[name])

/* The path's {id} as plain decimal in buf: 0, or -1 with rep set to 400. */
static int
note_id(const struct request *req, char buf[24], struct reply *rep)
{
	uintmax_t id;

	if (number_parse(request_param(req, "id"), INT64_MAX, &id) != 0 ||
	    id == 0) {
		reply_error(rep, 400, "a note's id is an integer from 1 to %jd",
		            (intmax_t)INT64_MAX);
		return -1;
	}
	snprintf(buf, 24, "%ju", id);
	return 0;
}

/* A byte an entity tag may hold between its quotes (RFC 9110 8.8.3). */
static int
is_etagc(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* A version this code made: 1 to 18 digits, the first not 0. */
static int
is_version(const char *s, size_t len)
{
	size_t digits = strspn(s, "0123456789");

	return len >= 1 && len <= 18 && s[0] != '0' && digits >= len;
}

/*
 * If-Match as the JSON array of the versions it names ("[3,5]") in
 * *versions (to free), or NULL when there is no If-Match or it is "*": no
 * condition on the version. A weak tag never matches (If-Match compares
 * strongly, RFC 9110 13.1.1), nor does a strong one that is not a version.
 * 0, or -1 with rep set: 400 when the field is neither "*" nor a list of
 * entity tags.
 */
/* Every If-Match line joined with ',' (RFC 9110 5.3: one list). */
struct if_match_field {
	char *text; /* NULL: no line came */
	size_t len;
	int failed; /* out of memory */
};

static void
if_match_line(void *arg, const char *value)
{
	struct if_match_field *f = arg;
	size_t n = value != NULL ? strlen(value) : 0;
	char *t = realloc(f->text, f->len + n + 2);

	if (t == NULL) {
		f->failed = 1;
		return;
	}
	if (f->text != NULL)
		t[f->len++] = ',';
	memcpy(t + f->len, value != NULL ? value : "", n);
	f->len += n;
	t[f->len] = '\0';
	f->text = t;
}

static int
if_match(const struct request *req, char **versions, struct reply *rep)
{
	struct if_match_field field = {NULL, 0, 0};
	const char *p;
	char *out = NULL;
	size_t n = 0;

	*versions = NULL;
	if (req->each != NULL)
		request_header_each(req, "If-Match", if_match_line, &field);
	else if ((p = request_header(req, "If-Match")) != NULL)
		if_match_line(&field, p);
	if (field.failed) {
		free(field.text);
		reply_json(rep, 500, NULL);
		return -1;
	}
	p = field.text;
	if (p == NULL)
		return 0;
	p += strspn(p, " \t");
	if (*p == '*') {
		p++;
		if (p[strspn(p, " \t")] != '\0')
			goto bad;
		free(field.text);
		return 0;
	}
	/* Each "N" of the field is at most N and a comma here. */
	out = malloc(strlen(p) + 3);
	if (out == NULL) {
		free(field.text);
		reply_json(rep, 500, NULL);
		return -1;
	}
	out[n++] = '[';
	for (p += strspn(p, " \t,"); *p != '\0'; p += strspn(p, " \t,")) {
		int weak = strncmp(p, "W/", 2) == 0;
		const char *tag = p + (weak ? 3 : 1);
		size_t len = 0;

		if (p[weak ? 2 : 0] != '"')
			goto bad;
		while (is_etagc((unsigned char)tag[len]))
			len++;
		if (tag[len] != '"')
			goto bad;
		if (!weak && is_version(tag, len)) {
			if (n > 1)
				out[n++] = ',';
			memcpy(out + n, tag, len);
			n += len;
		}
		p = tag + len + 1;
		p += strspn(p, " \t");
		if (*p != ',' && *p != '\0')
			goto bad;
	}
	out[n++] = ']';
	out[n] = '\0';
	*versions = out; /* the caller's */
	free(field.text);
	return 0;
bad:
	free(field.text);
	free(out);
	reply_error(rep, 400,
	            "If-Match must be \"*\" or a list of entity tags");
	return -1;
}

/* Row row of res as a note: its JSON without the version. */
static json_t *
note_json(const struct db_result *res, unsigned int row)
{
	json_t *note = db_result_json(res, row);

	json_object_del(note, "version"); /* NULL-safe */
	return note;
}

/* The first row of res as the reply, with its version as the ETag. */
static void
note_reply(struct reply *rep, unsigned int status, const struct db_result *res)
{
	char etag[32];

	snprintf(etag, sizeof(etag), "\"%s\"",
	         db_result_value(res, 0, NOTE_VERSION));
	reply_json(rep, status, note_json(res, 0));
	reply_header(rep, "ETag", etag);
}

/*
 * A PATCH or DELETE of id changed no row: 404 when the note is not there,
 * else If-Match named another version: 412 with the note's ETag now.
 */
static void
note_missing_or_stale(const struct request *req, const char *id,
                      struct reply *rep)
{
	const char *values[] = {id};
	struct db_result *res;
	char etag[32];

	if (db_query(req, ST(NOTES_GET), values, &res, rep) != 0)
		return;
	if (db_result_rows(res) == 0) {
		reply_error(rep, 404, "no note with id %s", id);
	} else {
		snprintf(etag, sizeof(etag), "\"%s\"",
		         db_result_value(res, 0, NOTE_VERSION));
		reply_error(rep, 412,
		            "the note has changed: its ETag is now %s, which "
		            "If-Match does not name",
		            etag);
		reply_header(rep, "ETag", etag);
	}
	db_result_free(res);
}

/* POST /notes: 201 with the note, its Location and its ETag. */
void
handle_notes_create(const struct request *req, struct reply *rep)
{
	json_t *tags = json_object_get(req->body, "tags");
	char *tags_text = NULL, location[32];
	const char *values[3];
	struct db_result *res;

	if (validate_body(&note_shape, req->body, VALIDATE_WHOLE, rep) != 0)
		return;
	if (tags != NULL &&
	    (tags_text = json_dumps(tags, JSON_COMPACT)) == NULL) {
		reply_json(rep, 500, NULL);
		return;
	}
	/* NULL for a field left out: the table's default. */
	values[0] = json_string_value(json_object_get(req->body, "title"));
	values[1] = json_string_value(json_object_get(req->body, "body"));
	values[2] = tags_text;
	if (db_query(req, ST(NOTES_INSERT), values, &res, rep) == 0) {
		note_reply(rep, 201, res);
		snprintf(location, sizeof(location), "/notes/%s",
		         db_result_value(res, 0, NOTE_ID));
		reply_header(rep, "Location", location);
		db_result_free(res);
	}
	free(tags_text);
}

/* GET /notes?limit=N&after=ID: a page of notes by id, and the next one's
 * link while there are more. */
void
handle_notes_list(const struct request *req, struct reply *rep)
{
	const char *l = request_query(req, "limit");
	const char *a = request_query(req, "after");
	uintmax_t limit = 20, after = 0;
	char after_text[24], limit_text[8];
	const char *values[] = {after_text, limit_text};
	struct db_result *res;
	json_t *items, *next;

	if (l != NULL && (number_parse(l, 100, &limit) != 0 || limit == 0)) {
		reply_error(rep, 400, "limit must be an integer from 1 to 100");
		return;
	}
	if (a != NULL && number_parse(a, INT64_MAX, &after) != 0) {
		reply_error(rep, 400, "after must be an integer from 0 to %jd",
		            (intmax_t)INT64_MAX);
		return;
	}
	snprintf(after_text, sizeof(after_text), "%ju", after);
	/* One more row than the page says whether a next page exists. */
	snprintf(limit_text, sizeof(limit_text), "%ju", limit + 1);
	if (db_query(req, ST(NOTES_LIST), values, &res, rep) != 0)
		return;
	items = json_array();
	/* Each item with its ETag, as the header of GET /notes/{id} has it:
	 * what a conditional PATCH or DELETE of it sends. */
	for (unsigned int i = 0; i < db_result_rows(res) && i < limit; i++) {
		json_t *note = note_json(res, i);

		json_object_set_new(
		    note, "etag",
		    json_sprintf("\"%s\"",
		                 db_result_value(res, i, NOTE_VERSION)));
		json_array_append_new(items, note);
	}
	next = db_result_rows(res) > limit
	           ? json_sprintf(
	                 "/notes?limit=%ju&after=%s", limit,
	                 db_result_value(res, (unsigned int)limit - 1, NOTE_ID))
	           : json_null();
	reply_json(rep, 200,
	           json_pack("{s:o, s:o}", "items", items, "next", next));
	db_result_free(res);
}

/* GET /notes/{id}: the note and its ETag, or 404. */
void
handle_notes_get(const struct request *req, struct reply *rep)
{
	char id[24];
	const char *values[] = {id};
	struct db_result *res;

	if (note_id(req, id, rep) != 0)
		return;
	if (db_query(req, ST(NOTES_GET), values, &res, rep) != 0)
		return;
	if (db_result_rows(res) == 0)
		reply_error(rep, 404, "no note with id %s", id);
	else
		note_reply(rep, 200, res);
	db_result_free(res);
}

/*
 * PATCH /notes/{id}: a JSON Merge Patch (RFC 7396) of title, body and tags;
 * null puts body and tags back to their defaults ("" and []). The note and
 * its new ETag; 412 when If-Match names another version.
 */
/*
 * A PATCH body's media type: a JSON Merge Patch, as such or as plain JSON.
 * Another +json type (application/json-patch+json, RFC 6902) would be
 * read as a merge patch and do something else than its sender meant.
 */
static int
patch_type_ok(const struct request *req)
{
	const char *ct = request_header(req, "Content-Type");
	size_t n;

	if (ct == NULL)
		return 0;
	ct += strspn(ct, " \t");
	n = strcspn(ct, "; \t");
	return (n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
	       (n == 28 &&
	        strncasecmp(ct, "application/merge-patch+json", n) == 0);
}

/*
 * An empty merge patch changes nothing, so nothing is written (no new
 * version, no new updated_at): the note as it is, 200, If-Match held to
 * as for any PATCH.
 */
static void
note_patch_empty(const struct request *req, const char *id,
                 const char *versions, struct reply *rep)
{
	const char *values[] = {id};
	struct db_result *res;
	json_t *names = versions != NULL ? json_loads(versions, 0, NULL) : NULL;
	int named = versions == NULL;

	if (versions != NULL && names == NULL) {
		reply_json(rep, 500, NULL);
		return;
	}
	if (db_query(req, ST(NOTES_GET), values, &res, rep) != 0)
		goto out;
	for (size_t i = 0;
	     !named && db_result_rows(res) > 0 && i < json_array_size(names);
	     i++) {
		char v[24];

		snprintf(v, sizeof(v), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_array_get(names, i)));
		named = strcmp(v, db_result_value(res, 0, NOTE_VERSION)) == 0;
	}
	if (db_result_rows(res) == 0 || !named)
		note_missing_or_stale(req, id, rep);
	else
		note_reply(rep, 200, res);
	db_result_free(res);
out:
	json_decref(names);
}

void
handle_notes_patch(const struct request *req, struct reply *rep)
{
	json_t *body = json_object_get(req->body, "body");
	json_t *tags = json_object_get(req->body, "tags");
	char id[24], *versions = NULL, *tags_text = NULL;
	const char *values[5] = {id};
	struct db_result *res;

	if (!patch_type_ok(req)) {
		reply_error(rep, 415,
		            "a PATCH body must be application/merge-patch+json "
		            "or application/json");
		return;
	}
	if (note_id(req, id, rep) != 0 ||
	    validate_body(&note_shape, req->body, VALIDATE_MERGE_PATCH, rep) !=
	        0 ||
	    if_match(req, &versions, rep) != 0)
		return;
	if (json_object_size(req->body) == 0) {
		note_patch_empty(req, id, versions, rep);
		goto out;
	}
	if (tags != NULL && !json_is_null(tags) &&
	    (tags_text = json_dumps(tags, JSON_COMPACT)) == NULL) {
		reply_json(rep, 500, NULL);
		goto out;
	}
	/* NULL for a field the patch leaves out: the note keeps its own. */
	values[1] = versions;
	values[2] = json_string_value(json_object_get(req->body, "title"));
	values[3] = json_is_null(body) ? "" : json_string_value(body);
	values[4] = json_is_null(tags) ? "[]" : tags_text;
	if (db_query(req, ST(NOTES_UPDATE), values, &res, rep) != 0)
		goto out;
	if (db_result_rows(res) == 0)
		note_missing_or_stale(req, id, rep);
	else
		note_reply(rep, 200, res);
	db_result_free(res);
out:
	free(tags_text);
	free(versions);
}

/* DELETE /notes/{id}: 204; 412 when If-Match names another version. */
void
handle_notes_delete(const struct request *req, struct reply *rep)
{
	char id[24], *versions = NULL;
	const char *values[2] = {id};
	struct db_result *res;

	if (note_id(req, id, rep) != 0 || if_match(req, &versions, rep) != 0)
		return;
	values[1] = versions;
	if (db_query(req, ST(NOTES_DELETE), values, &res, rep) != 0)
		goto out;
	if (db_result_rows(res) == 0)
		note_missing_or_stale(req, id, rep);
	else
		reply_text(rep, 204, calloc(1, 1), 0, "application/json");
	db_result_free(res);
out:
	free(versions);
}
