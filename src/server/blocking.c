/* SPDX-License-Identifier: MIT */
/*
 * blocking.c -- blocking routes: copy the request, suspend the connection,
 * run the handler on the pool with its client watched (gone.c), resume
 */
#include "internal.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "dispatch.h"
#include "pool.h"
#include "reply.h"

struct snapshot_size {
	size_t n, bytes;
	struct snapshot *snap; /* NULL while counting */
	char *at;              /* where the next string goes */
};

static enum MHD_Result
snapshot_add(void *cls, enum MHD_ValueKind kind, const char *key,
             const char *value)
{
	struct snapshot_size *sz = cls;
	size_t kl = strlen(key), vl = value != NULL ? strlen(value) : 0;
	struct snapshot_field *f;

	if (sz->snap == NULL) {
		sz->n++;
		sz->bytes += kl + 1 + (value != NULL ? vl + 1 : 0);
		return MHD_YES;
	}
	if (sz->snap->n == sz->n)
		return MHD_NO; /* counted beforehand: cannot happen */
	f = &sz->snap->at[sz->snap->n++];
	f->kind = kind == MHD_HEADER_KIND ? REQUEST_HEADER : REQUEST_QUERY;
	f->name = memcpy(sz->at, key, kl + 1);
	sz->at += kl + 1;
	f->value = NULL; /* "?flag": a key with no value */
	if (value != NULL) {
		f->value = memcpy(sz->at, value, vl + 1);
		sz->at += vl + 1;
	}
	return MHD_YES;
}

/* Copies the request's headers and query arguments into snap; 0 or -1. */
static int
snapshot_take(struct MHD_Connection *conn, struct snapshot *snap)
{
	const enum MHD_ValueKind kinds =
	    MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND;
	struct snapshot_size sz = {0, 0, NULL, NULL};

	MHD_get_connection_values(conn, kinds, snapshot_add, &sz);
	snap->n = 0;
	snap->at = malloc(sz.n * sizeof(*snap->at) + sz.bytes + 1);
	if (snap->at == NULL)
		return -1;
	sz.snap = snap;
	sz.at = (char *)(snap->at + sz.n); /* the strings follow the array */
	MHD_get_connection_values(conn, kinds, snapshot_add, &sz);
	return 0;
}

/* The request view's lookup on a handler thread: the copies only. */
static const char *
lookup_snapshot(void *ctx, enum request_field field, const char *name)
{
	const struct exchange *ex = ctx;
	const struct snapshot *snap = &ex->snap;

	if (field == REQUEST_PEER)
		return ex->peer; /* worked out before the job was queued */
	for (size_t i = 0; i < snap->n; i++)
		if (snap->at[i].kind == field &&
		    strcasecmp(snap->at[i].name, name) == 0)
			return snap->at[i].value;
	return NULL;
}

/* The request view's each() on a handler thread. */
static void
each_snapshot(void *ctx, enum request_field field, const char *name,
              void (*fn)(void *, const char *), void *arg)
{
	const struct exchange *ex = ctx;

	for (size_t i = 0; i < ex->snap.n; i++)
		if (ex->snap.at[i].kind == field &&
		    strcasecmp(ex->snap.at[i].name, name) == 0)
			fn(arg, ex->snap.at[i].value);
}

#define EXCHANGE_OF(t)                                                         \
	((struct exchange *)(void *)((char *)(t)-offsetof(struct exchange,     \
	                                                  task)))

/* On a handler thread: the handler, writing into the exchange's reply. */
static void
job_run(struct pool_task *task)
{
	struct exchange *ex = EXCHANGE_OF(task);
	struct request req = {
	    .lookup = lookup_snapshot, .each = each_snapshot, .ctx = ex};
	struct gone_slot *watch = NULL;

	request_view(ex, ex->res.route->method, &req);
	if (ex->method_head)
		req.method = "HEAD";
	req.body = ex->job_body;
	req.queued_ms = ex->queued_ms;
	req.started_ms = now_ms();
	if (ex->gone != NULL)
		watch = gone_claim(ex->gone, ex);
	if (watch != NULL) {
		/* Published before the state is read, as job_abandon moves
		 * the state before it reads this: one of the two sees the
		 * other, so a socket about to be closed is never watched. */
		atomic_store(&ex->watch, watch);
		if (atomic_load(&ex->job_state) == JOB_QUEUED)
			gone_watch(ex->gone, watch, ex->fd);
		else
			gone_cut(ex->gone, watch, ex);
		req.gone_fd = gone_fd(watch);
	}
	dispatch_run(ex->res.route, &req, ex->job_reply);
	if (watch != NULL) { /* before job_finish resumes the connection */
		atomic_store(&ex->watch, NULL);
		gone_release(ex->gone, watch);
	}
}

/*
 * Under the pool's lock, after job_run: hands the reply back by resuming the
 * connection, unless the stop abandoned it. Touches nothing but ex: after an
 * abandon the server may be gone.
 */
static void
job_finish(struct pool_task *task)
{
	struct exchange *ex = EXCHANGE_OF(task);
	int queued = JOB_QUEUED;

	if (atomic_compare_exchange_strong(&ex->job_state, &queued, JOB_DONE))
		MHD_resume_connection(ex->conn); /* on_request sends it */
	exchange_unref(ex);                      /* the pool's reference */
}

/* At stop, for a job still in the queue: it never ran. */
void
job_cancel(struct pool_task *task)
{
	struct exchange *ex = EXCHANGE_OF(task);

	atomic_store(&ex->job_state, JOB_CANCELLED);
	MHD_resume_connection(ex->conn);
	exchange_unref(ex);
}

/* At stop, under the pool's lock, for a job whose handler still runs. */
void
job_abandon(struct pool_task *task)
{
	struct exchange *ex = EXCHANGE_OF(task);
	int queued = JOB_QUEUED;
	struct gone_slot *watch;

	if (!atomic_compare_exchange_strong(&ex->job_state, &queued,
	                                    JOB_ABANDONED))
		return;
	/* Its socket out of the watch before libmicrohttpd may close it. */
	watch = atomic_load(&ex->watch);
	if (watch != NULL)
		gone_cut(ex->gone, watch, ex);
	MHD_resume_connection(ex->conn);
}

/*
 * A ROUTE_BLOCKING request: suspend the connection and queue the handler on
 * the pool, so this thread goes on serving its other connections. The
 * connection is suspended first, so the pool cannot resume it before; a full
 * queue resumes it at once for a 503.
 */
enum MHD_Result
start_job(struct server *srv, struct MHD_Connection *conn, struct exchange *ex,
          json_t *body)
{
	const union MHD_ConnectionInfo *fd;
	ex->job_reply = calloc(1, sizeof(*ex->job_reply));
	ex->queued_ms = now_ms();
	if (ex->job_reply == NULL || snapshot_take(conn, &ex->snap) != 0) {
		json_decref(body);
		return send_error(srv, conn, ex, 500, ex->chunked,
		                  "out of memory copying the request");
	}
	ex->job_body = body; /* the exchange's now */
	exchange_peer(ex);
	fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (fd != NULL && !ex->own) { /* microd's own requests: not watched */
		ex->gone = srv->gone;
		ex->fd = fd->connect_fd;
	}
	ex->task.run = job_run;
	ex->task.finish = job_finish;
	atomic_store(&ex->job_state, JOB_QUEUED);
	atomic_fetch_add(&ex->refs, 1); /* the pool's, dropped in job_finish */
	MHD_suspend_connection(conn);
	switch (pool_submit(srv->pool, &ex->task)) {
	case 0:
		break;
	case POOL_FULL:
		atomic_fetch_sub(&ex->refs, 1);
		atomic_store(&ex->job_state, JOB_REJECTED);
		MHD_resume_connection(conn);
		break;
	default: /* closed: the server is stopping */
		atomic_fetch_sub(&ex->refs, 1);
		atomic_store(&ex->job_state, JOB_CANCELLED);
		MHD_resume_connection(conn);
		break;
	}
	return MHD_YES;
}

/* libmicrohttpd resumed a blocking request: send what the pool left. */
enum MHD_Result
on_resumed(struct server *srv, struct MHD_Connection *conn, struct exchange *ex)
{
	struct reply rep = {0};

	switch (atomic_load(&ex->job_state)) {
	case JOB_DONE:
		return send_reply(srv, conn, ex, ex->job_reply, ex->chunked);
	case JOB_REJECTED:
		reply_error(
		    &rep, 503,
		    "every handler thread is busy and the handler queue "
		    "is full; retry");
		rep.retry_after = 1;
		return send_reply(srv, conn, ex, &rep, ex->chunked);
	case JOB_QUEUED:
		return MHD_YES; /* still on the pool: not called then */
	default:
		reply_error(&rep, 503,
		            "the service stopped before the handler "
		            "finished");
		return send_reply(srv, conn, ex, &rep, 1);
	}
}
