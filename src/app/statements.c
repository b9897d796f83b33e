/* SPDX-License-Identifier: MIT */
/* statements.c -- the service's statement table (src/app/statements.h) */
#include "statements.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A note's columns, in enum note_column's order. */
#define NOTE_COLUMNS "id, title, body, tags, created_at, updated_at, version"
static const struct db_column note[] = {
    {"id", DB_INT8},
    {"title", DB_TEXT},
    {"body", DB_TEXT},
    {"tags", DB_TEXT_ARRAY},
    {"created_at", DB_TIMESTAMPTZ},
    {"updated_at", DB_TIMESTAMPTZ},
    {"version", DB_INT8},
};
static const struct db_column id_only[] = {{"id", DB_INT8}};

/* Tags travel as a JSON array of strings, no text[] literal to escape,
 * and become an array in their order (WITH ORDINALITY ... ORDER BY n). */
static const enum db_type insert_params[] = {DB_TEXT, DB_TEXT, DB_JSONB};
static const enum db_type by_id[] = {DB_INT8};
static const enum db_type page[] = {DB_INT8, DB_INT4};
/* id, If-Match's versions (NULL: any), then title, body, tags: NULL keeps
 * the note's own. */
static const enum db_type update_params[] = {DB_INT8, DB_JSONB, DB_TEXT,
                                             DB_TEXT, DB_JSONB};
static const enum db_type delete_params[] = {DB_INT8, DB_JSONB};

/* TechEmpower's World table (src/app/world.c). */
static const struct db_column world[] = {
    {"id", DB_INT4},
    {"randomnumber", DB_INT4},
};
static const enum db_type world_id[] = {DB_INT4};
/* Two int[] as text ("{1,5,9}"): the ids, sorted and distinct, and their
 * new numbers in the same order. The table has no int[] type of its own,
 * so they are cast from text. */
static const enum db_type world_batch[] = {DB_TEXT, DB_TEXT};

const struct db_statement app_statements[] = {
    [NOTES_INSERT] = {"notes_insert",
                      "INSERT INTO notes (title, body, tags) "
                      "VALUES ($1, COALESCE($2, ''), ARRAY(SELECT t FROM "
                      "jsonb_array_elements_text($3) WITH ORDINALITY AS "
                      "a(t, n) ORDER BY n)) RETURNING " NOTE_COLUMNS,
                      insert_params, N(insert_params), note, N(note)},
    [NOTES_GET] = {"notes_get",
                   "SELECT " NOTE_COLUMNS " FROM notes WHERE id = $1", by_id,
                   N(by_id), note, N(note)},
    [NOTES_LIST] = {"notes_list",
                    "SELECT " NOTE_COLUMNS " FROM notes WHERE id > $1 "
                    "ORDER BY id LIMIT $2",
                    page, N(page), note, N(note)},
    /* $2 @> to_jsonb(version): the version is one of If-Match's. */
    [NOTES_UPDATE] = {"notes_update",
                      "UPDATE notes SET title = COALESCE($3, title), "
                      "body = COALESCE($4, body), "
                      "tags = CASE WHEN $5 IS NULL THEN tags ELSE "
                      "ARRAY(SELECT t FROM jsonb_array_elements_text($5) "
                      "WITH ORDINALITY AS a(t, n) ORDER BY n) END, "
                      "updated_at = now(), version = version + 1 "
                      "WHERE id = $1 AND ($2 IS NULL OR "
                      "$2 @> to_jsonb(version)) RETURNING " NOTE_COLUMNS,
                      update_params, N(update_params), note, N(note)},
    [NOTES_DELETE] = {"notes_delete",
                      "DELETE FROM notes WHERE id = $1 AND ($2 IS NULL OR "
                      "$2 @> to_jsonb(version)) RETURNING id",
                      delete_params, N(delete_params), id_only, N(id_only)},
    [WORLD_GET] = {"world_get",
                   "SELECT id, randomnumber FROM world WHERE id = $1", world_id,
                   N(world_id), world, N(world)},
    /* One statement for a request's batch; the ids in order, so that two
     * batches lock their rows in the same order. */
    [WORLD_UPDATE] = {"world_update",
                      "UPDATE world SET randomnumber = v.r "
                      "FROM unnest($1::text::int[], $2::text::int[]) "
                      "AS v(id, r) WHERE world.id = v.id",
                      world_batch, N(world_batch), NULL, 0},
};

const unsigned int app_statements_count = N(app_statements);
