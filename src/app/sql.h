/* SPDX-License-Identifier: MIT */
/*
 * sql.h -- the service's migrations: every .sql file of src/app/sql/ in name
 * order, built into the binary by the Makefile ($(BUILD)/gen/app_sql.c)
 */
#ifndef MICROD_APP_SQL_H
#define MICROD_APP_SQL_H

#include "db/db.h"

extern const struct db_migration app_migrations[];
extern const unsigned int app_migrations_count;

#endif
