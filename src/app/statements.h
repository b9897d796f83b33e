/* SPDX-License-Identifier: MIT */
/*
 * statements.h -- the service's SQL: every statement its handlers run, with
 * its parameter and column types, prepared on each database connection and
 * checked against the schema at start (src/db/query.h)
 */
#ifndef MICROD_APP_STATEMENTS_H
#define MICROD_APP_STATEMENTS_H

#include "db/query.h"

extern const struct db_statement app_statements[];
extern const unsigned int app_statements_count;

#endif
