/* SPDX-License-Identifier: MIT */
/*
 * query.c -- one statement of the table run for a blocking handler: acquire,
 * prepare at first use, send with bound text parameters, wait on the
 * server, the client and the deadline, answer a failure by its SQLSTATE
 *
 * A handler calls db_query or db_pipeline and waits for the results; the
 * statements travel on the pool's lanes (pipeline.c), pipelined with other
 * requests' on one connection. This file answers what came back.
 */
#include "query.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "db.h"
#include "internal.h"
#include "log.h"
#include "otel.h"
#include "reply.h"

struct db_result {
	PGresult *pg;
	const struct db_statement *st;
};

unsigned int
db_type_oid(enum db_type t)
{
	switch (t) {
	case DB_BOOL:
		return 16;
	case DB_INT4:
		return 23;
	case DB_INT8:
		return 20;
	case DB_TEXT:
		return 25;
	case DB_TEXT_ARRAY:
		return 1009;
	case DB_JSONB:
		return 3802;
	case DB_TIMESTAMPTZ:
		return 1184;
	}
	return 0;
}

enum db_wait
db_result_wait(PGconn *pg, long long deadline_ms, int stop_fd, PGresult **out)
{
	PGresult *r, *kept = NULL;

	*out = NULL;
	for (;;) {
		while (PQisBusy(pg)) {
			struct pollfd pfd[2] = {
			    {.fd = PQsocket(pg), .events = POLLIN},
			    {.fd = stop_fd, .events = POLLIN}};
			long long left =
			    deadline_ms < 0 ? -1 : deadline_ms - now_ms();
			int n;

			if (pfd[0].fd < 0)
				goto broken;
			if (deadline_ms >= 0 && left <= 0)
				goto timeout;
			n = poll(pfd, stop_fd >= 0 ? 2 : 1,
			         left < 0 || left > 60000 ? 60000 : (int)left);
			if (n < 0 && errno != EINTR)
				goto broken;
			if (n > 0 && stop_fd >= 0 && pfd[1].revents != 0) {
				PQclear(kept);
				return DB_WAIT_GONE;
			}
			if (n > 0 && !PQconsumeInput(pg))
				goto broken;
		}
		r = PQgetResult(pg);
		if (r == NULL)
			break;
		if (kept != NULL && PQresultStatus(kept) == PGRES_FATAL_ERROR) {
			PQclear(r); /* the first failure counts */
		} else {
			PQclear(kept); /* else the last result */
			kept = r;
		}
	}
	*out = kept;
	if (PQstatus(pg) != CONNECTION_OK)
		return DB_WAIT_BROKEN;
	return DB_WAIT_DONE;
timeout:
	PQclear(kept);
	return DB_WAIT_TIMEOUT;
broken:
	*out = kept;
	return DB_WAIT_BROKEN;
}

int
db_prepare(PGconn *pg, const struct db_statement *st, long long deadline_ms,
           int stop_fd, PGresult **err)
{
	Oid types[64];
	PGresult *r = NULL;
	enum db_wait w;
	const char *state;

	*err = NULL;
	if (st->n_params > sizeof(types) / sizeof(types[0]))
		return -1;
	for (unsigned int j = 0; j < st->n_params; j++)
		types[j] = db_type_oid(st->params[j]);
	if (!PQsendPrepare(pg, st->name, st->sql, (int)st->n_params, types))
		return -1;
	w = db_result_wait(pg, deadline_ms, stop_fd, &r);
	if (w == DB_WAIT_TIMEOUT)
		return -2;
	if (w == DB_WAIT_GONE)
		return -3;
	if (w == DB_WAIT_DONE && r != NULL &&
	    PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		return 0;
	}
	/* Prepared on this connection already (a schema check's): fine. */
	state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (w == DB_WAIT_DONE && state != NULL && strcmp(state, "42P05") == 0) {
		PQclear(r);
		return 0;
	}
	*err = r;
	return -1;
}

/* What the client reads for a verdict: never the SQL or the server's words. */
static void
query_refuse(struct reply *rep, struct db_verdict v, const char *sqlstate,
             unsigned int deadline_ms)
{
	if (sqlstate != NULL && strcmp(sqlstate, "57014") == 0)
		reply_error(rep, v.status,
		            "the database statement did not finish within %u "
		            "ms",
		            deadline_ms);
	else if (v.status == 409)
		reply_error(rep, v.status,
		            "a stored row has the same unique value");
	else if (v.status == 400)
		reply_error(rep, v.status,
		            "a value is not valid input for its type");
	else if (v.retry)
		reply_error(rep, v.status,
		            "the database could not serialize the transaction; "
		            "try again");
	else if (v.status == 503)
		reply_error(rep, v.status, "the database connection failed");
	else
		reply_error(rep, v.status, "the database failed the statement");
	rep->retry_after = v.retry_after;
}

/* The server's primary message on one line, for the log only. */
static void
query_log(const struct db_statement *st, const char *sqlstate,
          const PGresult *r, unsigned int status)
{
	char msg[256];
	const char *m =
	    r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (m == NULL)
		m = "(no message)";
	snprintf(msg, sizeof(msg), "%s", m);
	for (char *c = msg; *c != '\0'; c++)
		if (*c == '\n' || *c == '\r')
			*c = *(c + 1) == '\0' ? '\0' : ' ';
	log_msg(status >= 500 ? LOG_WARN : LOG_INFO,
	        "database: statement %s: SQLSTATE %s (%u): %s", st->name,
	        sqlstate != NULL ? sqlstate : "none", status, msg);
}

/* db_query called on an I/O thread was logged; shared, hence atomic. */
static atomic_int io_thread_logged;

/* Whether a run may be tried once more: a serialization failure or
 * deadlock (the verdict says retry), a cached plan the schema changed
 * under (0A000), or a statement the connection no longer has (26000):
 * prepared afresh on the next run. */
static int
query_again(const char *sqlstate, struct db_verdict v)
{
	return v.retry ||
	       (sqlstate != NULL && (strcmp(sqlstate, "0A000") == 0 ||
	                             strcmp(sqlstate, "26000") == 0));
}

/* The results of a batch that ran, each the call's own. 0, or -1 when
 * memory runs out (none set then). */
static int
query_take(struct db_batch *b, struct db_call *calls, unsigned int n,
           const struct db_statement *const *st)
{
	unsigned int k;

	for (k = 0; k < n; k++) {
		calls[k].res = malloc(sizeof(*calls[k].res));
		if (calls[k].res == NULL)
			goto fail;
		calls[k].res->pg = b->pg[k];
		calls[k].res->st = st[k];
	}
	for (k = 0; k < n; k++)
		b->pg[k] = NULL; /* the calls' now */
	return 0;
fail:
	while (k-- > 0) {
		free(calls[k].res);
		calls[k].res = NULL;
	}
	return -1;
}

/* What a batch that did not run answers: the reply, the log line and the
 * metrics. first: its first statement's row, name its name. */
static void
query_not_run(struct db_pool *pool, const struct db_batch *b,
              unsigned int first, const char *name, struct reply *rep)
{
	const struct db_pool_options *opt = db_pool_settings(pool);

	switch (b->outcome) {
	case DB_GONE:
		log_info("database: statement %s: the client left; cancelled",
		         name);
		reply_error(rep, 503,
		            "the client left; the statement was cancelled");
		return;
	case DB_TIMEOUT:
		db_pool_count_error(pool, first, "57014");
		log_warn("database: statement %s: SQLSTATE 57014 (504): no "
		         "answer within %u ms; cancelled, its connection "
		         "discarded",
		         name, opt->statement_timeout_ms);
		query_refuse(rep, db_sqlstate_verdict("57014"), "57014",
		             opt->statement_timeout_ms);
		return;
	case DB_NO_SLOT:
		reply_error(rep, 503, "no database connection within %u ms",
		            opt->acquire_timeout_ms);
		log_info("database: statement %s: no connection free in time",
		         name);
		break;
	case DB_UNREACHABLE:
		reply_error(rep, 503, "the database cannot be reached");
		log_info("database: statement %s: the database is down", name);
		break;
	case DB_LOST:
	case DB_CLOSING:
	case DB_RAN:
		db_pool_count_error(pool, first, NULL);
		log_warn("database: statement %s: SQLSTATE none (503): %s",
		         name,
		         b->outcome == DB_CLOSING ? "the pool is closing"
		                                  : "the connection failed");
		reply_error(rep, 503, "the database connection failed");
		break;
	}
	rep->retry_after = 1;
}

/* A CLIENT span for each statement of b that the server answered: from
 * the batch's sending to its result, the failed one with its SQLSTATE; a
 * batch past its deadline, one span for its first statement (57014). */
static void
query_spans(const struct request *req, const struct db_batch *b,
            const struct db_statement *const *st, unsigned int n,
            const struct db_statement *table)
{
	if (b->sent_ns == 0)
		return;
	if (b->outcome == DB_TIMEOUT) {
		otel_client_span(req, st[0]->name, b->sent_ns, now_ns(),
		                 "57014");
		return;
	}
	if (b->outcome != DB_RAN)
		return;
	for (unsigned int k = 0; k < n; k++)
		if (b->pg[k] != NULL)
			otel_client_span(req, st[k]->name, b->sent_ns,
			                 b->end_ns[k], NULL);
	if (b->err != NULL)
		otel_client_span(req, table[b->err_stmt].name, b->sent_ns,
		                 b->err_ns,
		                 PQresultErrorField(b->err, PG_DIAG_SQLSTATE));
}

/* One run of the batch: 0 with every call's res, 1 when it may run once
 * more, -1 with rep set. */
static int
query_run(const struct request *req, struct db_pool *pool,
          struct db_call *calls, unsigned int n,
          const struct db_statement *const *st, const unsigned int *rows,
          int last, struct reply *rep)
{
	const struct db_pool_options *opt = db_pool_settings(pool);
	long long waited = req->started_ms - req->queued_ms;
	long long queued_ns = waited > 0 ? waited * 1000000 : 0;
	long long t0 = now_ns();
	struct db_batch *b = db_batch_new(calls, n);
	const char *state;
	struct db_verdict v;
	int ret = -1;

	if (b == NULL) {
		reply_error(rep, 500, "out of memory");
		return -1;
	}
	memcpy(b->stmt, rows, n * sizeof(*rows));
	b->gone_fd = request_gone_fd(req);
	/* The wait in the handler queue counts: it is the acquire's. */
	b->acquire_deadline_ms =
	    now_ms() + opt->acquire_timeout_ms - (waited > 0 ? waited : 0);
	if (db_lanes_run(db_pool_lanes(pool), b) == 0) {
		/* Its client left while it runs pipelined with others: the
		 * lane drops its result and frees it. */
		log_info("database: statement %s: the client left; its "
		         "result is dropped",
		         st[0]->name);
		reply_error(rep, 503,
		            "the client left; the statement was cancelled");
		return -1;
	}
	query_spans(req, b, st, n, opt->statements);
	if (b->outcome == DB_NO_SLOT)
		db_pool_count_acquire(pool, now_ns() - t0 + queued_ns, 1);
	else if (b->sent_ns > 0)
		db_pool_count_acquire(pool, b->sent_ns - t0 + queued_ns, 0);
	if (b->outcome != DB_RAN) {
		query_not_run(pool, b, rows[0], st[0]->name, rep);
		goto done;
	}
	if (b->err == NULL) {
		if (query_take(b, calls, n, st) == 0)
			ret = 0;
		else
			reply_error(rep, 500, "out of memory");
		goto done;
	}
	state = PQresultErrorField(b->err, PG_DIAG_SQLSTATE);
	v = db_sqlstate_verdict(state);
	db_pool_count_error(pool, b->err_stmt, state);
	query_log(&opt->statements[b->err_stmt], state, b->err, v.status);
	if (state != NULL && strcmp(state, "0A000") == 0)
		db_pool_schema_changed(pool, opt->statements[b->err_stmt].name);
	if (!last && query_again(state, v))
		ret = 1;
	else
		query_refuse(rep, v, state, opt->statement_timeout_ms);
done:
	db_batch_free(b);
	return ret;
}

int
db_pipeline(const struct request *req, struct db_call *calls, unsigned int n,
            struct reply *rep)
{
	struct db_pool *pool = request_db(req);
	const struct db_statement *st[DB_PIPELINE_MAX];
	unsigned int rows[DB_PIPELINE_MAX];
	const char *name = n > 0 ? calls[0].st->name : "(none)";

	for (unsigned int k = 0; k < n && k < DB_PIPELINE_MAX; k++)
		calls[k].res = NULL;
	if (pool == NULL) {
		reply_error(rep, 503, "no database is configured");
		return -1;
	}
	if (req->queued_ms == 0) {
		/* An I/O thread: waiting on the database here would stall
		 * every connection it serves. Said once: a route's error. */
		if (!atomic_exchange(&io_thread_logged, 1))
			log_error("database: statement %s: db_query on an I/O "
			          "thread: mark the route ROUTE_BLOCKING",
			          name);
		reply_error(rep, 500,
		            "a database statement outside the handler pool");
		return -1;
	}
	if (n == 0 || n > DB_PIPELINE_MAX) {
		log_error("database: a batch of %u statements (1 to %d)", n,
		          DB_PIPELINE_MAX);
		reply_error(rep, 500, "the database failed the statement");
		return -1;
	}
	for (unsigned int k = 0; k < n; k++) {
		int i = db_pool_statement(pool, calls[k].st);

		if (i < 0) {
			log_error("database: statement %s is not in the "
			          "pool's table",
			          calls[k].st->name);
			reply_error(rep, 500,
			            "the database failed the statement");
			return -1;
		}
		st[k] = calls[k].st;
		rows[k] = (unsigned int)i;
	}
	for (int attempt = 0;; attempt++) {
		int r =
		    query_run(req, pool, calls, n, st, rows, attempt == 1, rep);

		if (r <= 0)
			return r;
	}
}

int
db_query(const struct request *req, const struct db_statement *st,
         const char *const *values, struct db_result **res, struct reply *rep)
{
	struct db_call call = {st, values, NULL};
	int ret = db_pipeline(req, &call, 1, rep);

	*res = call.res;
	return ret;
}

unsigned int
db_result_rows(const struct db_result *res)
{
	int n = PQntuples(res->pg);

	return n > 0 ? (unsigned int)n : 0;
}

const char *
db_result_value(const struct db_result *res, unsigned int row, unsigned int col)
{
	if (row >= db_result_rows(res) || (int)col >= PQnfields(res->pg) ||
	    PQgetisnull(res->pg, (int)row, (int)col))
		return NULL;
	return PQgetvalue(res->pg, (int)row, (int)col);
}

/* One array element's text, unquoted, into out (as long as s): its end. */
static const char *
array_element(const char *s, char *out, int *quoted)
{
	size_t n = 0;

	*quoted = *s == '"';
	if (*quoted) {
		for (s++; *s != '"'; s++) {
			if (*s == '\0')
				return NULL;
			if (*s == '\\' && *++s == '\0')
				return NULL;
			out[n++] = *s;
		}
		s++;
	} else {
		for (; *s != ',' && *s != '}' && *s != '\0'; s++) {
			if (*s == '"' || *s == '{')
				return NULL;
			if (*s == '\\' && *++s == '\0')
				return NULL;
			out[n++] = *s;
		}
	}
	out[n] = '\0';
	return s;
}

json_t *
db_text_array_json(const char *s)
{
	json_t *arr = json_array();
	char *buf = malloc(strlen(s) + 1);

	if (arr == NULL || buf == NULL)
		goto fail;
	if (*s == '[') { /* bounds other than 1: "[0:1]={a,b}" */
		s = strchr(s, '=');
		if (s == NULL)
			goto fail;
		s++;
	}
	if (*s++ != '{')
		goto fail;
	if (*s == '}' && s[1] == '\0')
		goto done;
	for (;;) {
		int quoted;
		json_t *v;

		s = array_element(s, buf, &quoted);
		if (s == NULL)
			goto fail;
		if (!quoted && strcmp(buf, "NULL") == 0)
			v = json_null();
		else if (!quoted && buf[0] == '\0')
			goto fail; /* "{a,,b}" */
		else
			v = json_string(buf);
		if (json_array_append_new(arr, v) != 0)
			goto fail;
		if (*s == '}' && s[1] == '\0')
			break;
		if (*s++ != ',')
			goto fail;
	}
done:
	free(buf);
	return arr;
fail:
	free(buf);
	json_decref(arr);
	return NULL;
}

char *
db_text_array_literal(const json_t *strings)
{
	size_t len = 3, i, n = json_array_size(strings);
	char *out, *p;

	if (!json_is_array(strings))
		return NULL;
	for (i = 0; i < n; i++) {
		const json_t *v = json_array_get(strings, i);
		const char *c = json_string_value(v);

		if (c == NULL)
			return NULL;
		len += 3 + 2 * json_string_length(v);
		if (strlen(c) != json_string_length(v))
			return NULL; /* a NUL: no text holds one */
	}
	out = malloc(len);
	if (out == NULL)
		return NULL;
	p = out;
	*p++ = '{';
	for (i = 0; i < n; i++) {
		const char *c = json_string_value(json_array_get(strings, i));

		if (i > 0)
			*p++ = ',';
		*p++ = '"';
		for (; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return out;
}

/* n digits at *s, advanced past them: the value, or -1. */
static int
time_digits(const char **s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*s)++) {
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (**s - '0');
	}
	return v;
}

int
db_time_rfc3339(const char *s, char *out, size_t len)
{
	struct tm tm = {0};
	const char *frac = NULL;
	size_t nfrac = 0;
	int off = 0, sign, oh, om = 0, os = 0;
	time_t t;

	if ((tm.tm_year = time_digits(&s, 4)) < 0 || *s++ != '-' ||
	    (tm.tm_mon = time_digits(&s, 2)) < 0 || *s++ != '-' ||
	    (tm.tm_mday = time_digits(&s, 2)) < 0 || *s++ != ' ' ||
	    (tm.tm_hour = time_digits(&s, 2)) < 0 || *s++ != ':' ||
	    (tm.tm_min = time_digits(&s, 2)) < 0 || *s++ != ':' ||
	    (tm.tm_sec = time_digits(&s, 2)) < 0)
		return -1;
	if (*s == '.') {
		frac = ++s;
		while (*s >= '0' && *s <= '9')
			s++;
		nfrac = (size_t)(s - frac);
		if (nfrac == 0 || nfrac > 6)
			return -1;
	}
	if (*s != '+' && *s != '-')
		return -1;
	sign = *s++ == '-' ? -1 : 1;
	if ((oh = time_digits(&s, 2)) < 0)
		return -1;
	if (*s == ':' && (s++, (om = time_digits(&s, 2)) < 0))
		return -1;
	if (*s == ':' && (s++, (os = time_digits(&s, 2)) < 0))
		return -1;
	if (*s != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
	    tm.tm_sec > 60)
		return -1; /* " BC", or a field out of range */
	off = sign * (oh * 3600 + om * 60 + os);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm) - off;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 0)
		return -1;
	if ((size_t)snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d%s%.*sZ",
	                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	                     tm.tm_hour, tm.tm_min, tm.tm_sec,
	                     frac != NULL ? "." : "", (int)nfrac,
	                     frac != NULL ? frac : "") >= len)
		return -1;
	return 0;
}

/* One value as its column's type says; NULL when memory runs out or the
 * text is not of that type. */
static json_t *
result_value(enum db_type type, const char *v)
{
	char when[40];

	switch (type) {
	case DB_BOOL:
		return json_boolean(v[0] == 't');
	case DB_INT4:
	case DB_INT8: {
		char *end;
		long long n;

		errno = 0;
		n = strtoll(v, &end, 10);
		if (errno != 0 || *end != '\0' || end == v)
			return NULL;
		return json_integer((json_int_t)n);
	}
	case DB_TEXT:
		return json_string(v);
	case DB_TEXT_ARRAY:
		return db_text_array_json(v);
	case DB_JSONB:
		return json_loads(v, JSON_DECODE_ANY, NULL);
	case DB_TIMESTAMPTZ:
		/* infinity and years past 9999 have no RFC 3339 form: as
		 * the server wrote them. */
		return json_string(
		    db_time_rfc3339(v, when, sizeof(when)) == 0 ? when : v);
	}
	return NULL;
}

json_t *
db_result_json(const struct db_result *res, unsigned int row)
{
	const struct db_statement *st = res->st;
	json_t *obj = json_object();

	if (obj == NULL)
		return NULL;
	for (unsigned int col = 0; col < st->n_columns; col++) {
		const char *v = db_result_value(res, row, col);
		json_t *j = v != NULL ? result_value(st->columns[col].type, v)
		                      : json_null();

		if (j == NULL) {
			log_warn("database: statement %s: column %s: cannot "
			         "read %s",
			         st->name, st->columns[col].name,
			         v != NULL ? "its value" : "a row");
			json_decref(obj);
			return NULL;
		}
		if (json_object_set_new(obj, st->columns[col].name, j) != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

void
db_result_free(struct db_result *res)
{
	if (res == NULL)
		return;
	PQclear(res->pg);
	free(res);
}
