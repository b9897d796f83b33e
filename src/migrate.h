/* SPDX-License-Identifier: MIT */
/* migrate.h -- `microd migrate`: apply the service's pending migrations */
#ifndef MICROD_MIGRATE_H
#define MICROD_MIGRATE_H

struct db_migration;

/*
 * argv[0] is "migrate"; m[0..n) the migrations built in. Returns the exit
 * status: 0 all applied, 1 the database cannot be reached or a migration
 * failed, 2 a changed checksum or bad usage.
 */
int migrate_main(int argc, char **argv, const struct db_migration *m,
                 unsigned int n);

#endif
