/* SPDX-License-Identifier: MIT */
/*
 * world.c -- the TechEmpower test types: /json and /plaintext made per
 * request, and /db, /queries, /updates on the World table, every query of a
 * request sent together in one db_pipeline
 */
#include "handlers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "number.h"
#include "reply.h"
#include "reqid.h"
#include "statements.h"

#define ST(name) (&app_statements[name])

/* The World table's ids and numbers are both 1 to WORLD_ROWS. */
#define WORLD_ROWS 10000
/* "10000" and a NUL. */
#define WORLD_NUM 8

unsigned int
world_queries(const char *value)
{
	uintmax_t n;

	/* Missing, empty or not an integer: 1. Larger than any bound: 500. */
	if (value == NULL || value[0] == '\0' ||
	    value[strspn(value, "0123456789")] != '\0')
		return 1;
	if (number_parse(value, UINTMAX_MAX, &n) != 0 || n > WORLD_QUERIES_MAX)
		return WORLD_QUERIES_MAX;
	return n < 1 ? 1 : (unsigned int)n;
}

/* 1 to WORLD_ROWS, from this thread's generator. */
static unsigned int
world_random(void)
{
	return 1 + (unsigned int)(reqid_random() % WORLD_ROWS);
}

/* The benchmark's rules ask for Server on each of these routes' replies;
 * the Date libmicrohttpd writes on every reply, from the clock of the
 * moment. */
static void
world_headers(struct reply *rep)
{
	reply_header(rep, "Server", "microd");
}

/* GET /json: a new object for each request. */
void
handle_json(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200, json_pack("{s:s}", "message", "Hello, World!"));
	world_headers(rep);
}

/* GET /plaintext */
void
handle_plaintext(const struct request *req, struct reply *rep)
{
	static const char hello[] = "Hello, World!";

	(void)req;
	reply_text(rep, 200, strdup(hello), sizeof(hello) - 1, "text/plain");
	world_headers(rep);
}

/* One row of WORLD_GET's result as {"id":…,"randomNumber":…}, the number
 * number when it is not 0; NULL when the row is not there. */
static json_t *
world_row(const struct db_result *res, unsigned int number)
{
	uintmax_t id, r;

	if (db_result_rows(res) != 1 ||
	    number_parse(db_result_value(res, 0, WORLD_ID), INT32_MAX, &id) !=
	        0 ||
	    number_parse(db_result_value(res, 0, WORLD_RANDOMNUMBER), INT32_MAX,
	                 &r) != 0)
		return NULL;
	return json_pack("{s:I,s:I}", "id", (json_int_t)id, "randomNumber",
	                 (json_int_t)(number != 0 ? number : r));
}

/* One query's id, its text and its place in the batch. */
struct world_slot {
	unsigned int id, number; /* number: /updates' new one */
	char text[WORLD_NUM];
	const char *values[1];
};

/* An int[] as text ("{3,17}") of the n numbers at 'at' in order. */
static char *
world_array(const unsigned int *at, unsigned int n)
{
	char *s = malloc((size_t)n * WORLD_NUM + 3), *p = s;

	if (s == NULL)
		return NULL;
	*p++ = '{';
	for (unsigned int k = 0; k < n; k++)
		p += sprintf(p, k > 0 ? ",%u" : "%u", at[k]);
	*p++ = '}';
	*p = '\0';
	return s;
}

static int
world_cmp(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return (x > y) - (x < y);
}

/*
 * The batch's UPDATE: every distinct id once, in order, with one new number
 * each, which slot[k].number then holds for every k of that id (a request
 * may draw an id twice; the row gets one number and both show it). Its two
 * parameters in params[0..1], to free. 0, or -1 out of memory.
 */
static int
world_update_params(struct world_slot *slot, unsigned int n, char *params[2])
{
	unsigned int *ids = malloc(sizeof(*ids) * n * 2), *numbers, m = 0;
	int rc = -1;

	params[0] = params[1] = NULL;
	if (ids == NULL)
		return -1;
	numbers = ids + n;
	for (unsigned int k = 0; k < n; k++)
		ids[k] = slot[k].id;
	qsort(ids, n, sizeof(*ids), world_cmp);
	for (unsigned int k = 0; k < n; k++)
		if (m == 0 || ids[m - 1] != ids[k])
			ids[m++] = ids[k];
	for (unsigned int k = 0; k < m; k++)
		numbers[k] = world_random();
	for (unsigned int k = 0; k < n; k++) {
		const unsigned int *at =
		    bsearch(&slot[k].id, ids, m, sizeof(*ids), world_cmp);

		slot[k].number = numbers[at - ids];
	}
	params[0] = world_array(ids, m);
	params[1] = world_array(numbers, m);
	if (params[0] != NULL && params[1] != NULL)
		rc = 0;
	free(ids);
	return rc;
}

/*
 * n reads of random rows, and with update the batch's UPDATE after them,
 * in one db_pipeline. The rows as an array (one object: single), each as
 * it now is.
 */
static void
world_run(const struct request *req, struct reply *rep, unsigned int n,
          int update, int single)
{
	struct world_slot *slot = calloc(n, sizeof(*slot));
	struct db_call *calls = calloc(n + 1, sizeof(*calls));
	char *params[2] = {NULL, NULL};
	const char *update_values[2];
	json_t *rows = NULL;
	unsigned int k, ncalls = n;

	if (slot == NULL || calls == NULL)
		goto nomem;
	for (k = 0; k < n; k++) {
		slot[k].id = world_random();
		snprintf(slot[k].text, sizeof(slot[k].text), "%u", slot[k].id);
		slot[k].values[0] = slot[k].text;
		calls[k].st = ST(WORLD_GET);
		calls[k].values = slot[k].values;
	}
	if (update) {
		if (world_update_params(slot, n, params) != 0)
			goto nomem;
		update_values[0] = params[0];
		update_values[1] = params[1];
		calls[n].st = ST(WORLD_UPDATE);
		calls[n].values = update_values;
		ncalls++;
	}
	if (db_pipeline(req, calls, ncalls, rep) != 0)
		goto out;
	rows = json_array();
	for (k = 0; rows != NULL && k < n; k++) {
		json_t *row = world_row(calls[k].res, slot[k].number);

		if (row == NULL || json_array_append_new(rows, row) != 0) {
			json_decref(rows);
			rows = NULL;
		}
	}
	for (k = 0; k < ncalls; k++)
		db_result_free(calls[k].res);
	if (rows != NULL && single) {
		json_t *one = json_incref(json_array_get(rows, 0));

		json_decref(rows);
		rows = one;
	}
	reply_json(rep, 200, rows); /* rows is rep's; NULL: a 500 */
	goto out;
nomem:
	reply_json(rep, 500, NULL);
out:
	world_headers(rep); /* on every reply of these routes, a problem too */
	free(params[0]);
	free(params[1]);
	free(calls);
	free(slot);
}

/* GET /db: one random row. */
void
handle_db(const struct request *req, struct reply *rep)
{
	world_run(req, rep, 1, 0, 1);
}

/* GET /queries?queries=N: N random rows, one query each. */
void
handle_queries(const struct request *req, struct reply *rep)
{
	world_run(req, rep, world_queries(request_query(req, "queries")), 0, 0);
}

/* GET /updates?queries=N: N random rows, each given a new number. */
void
handle_updates(const struct request *req, struct reply *rep)
{
	world_run(req, rep, world_queries(request_query(req, "queries")), 1, 0);
}
