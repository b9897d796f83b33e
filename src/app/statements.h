/* SPDX-License-Identifier: MIT */
/*
 * statements.h -- the service's SQL: every statement its handlers run, with
 * its parameter and column types, prepared on each database connection and
 * checked against the schema at start (src/db/query.h)
 */
#ifndef MICROD_APP_STATEMENTS_H
#define MICROD_APP_STATEMENTS_H

#include "db/query.h"

/* Each statement's row in app_statements: &app_statements[NOTES_GET]. */
enum app_statement {
	NOTES_INSERT,
	NOTES_GET,
	NOTES_LIST,
	NOTES_UPDATE,
	NOTES_DELETE,
	WORLD_GET,
	WORLD_UPDATE,
};

/* The columns of a note as the note statements return them. */
enum note_column {
	NOTE_ID,
	NOTE_TITLE,
	NOTE_BODY,
	NOTE_TAGS,
	NOTE_CREATED_AT,
	NOTE_UPDATED_AT,
	NOTE_VERSION, /* the ETag; not part of the note's JSON */
};

/* The columns of a world row (WORLD_GET). */
enum world_column {
	WORLD_ID,
	WORLD_RANDOMNUMBER,
};

extern const struct db_statement app_statements[];
extern const unsigned int app_statements_count;

#endif
