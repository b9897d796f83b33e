/* SPDX-License-Identifier: MIT */
/* statements.c -- the service's statement table (src/app/statements.h) */
#include "statements.h"

const struct db_statement app_statements[] = {
    {"app_ping", "SELECT 1", NULL, 0, NULL, 0},
};

const unsigned int app_statements_count =
    sizeof(app_statements) / sizeof(app_statements[0]);
