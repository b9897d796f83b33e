/* SPDX-License-Identifier: MIT */
/*
 * internal.h -- what the files of src/server/ share: the server, the
 * exchange (one request), and the functions each file gives the others
 */
#ifndef MICROD_SERVER_INTERNAL_H
#define MICROD_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "policy.h"
#include "pool.h"
#include "reqid.h"
#include "request.h"
#include "router.h"
#include "trace.h"

struct app;
struct middleware_fields;
struct runtime;

/* Most workers the watchdog checks one by one; past that, a sample. */
#define CHECK_MAX 256

/*
 * How far apart two fields' lines may be in libmicrohttpd's buffer and still
 * be looked at byte by byte: the connection pool bounds a head anyway.
 */
#define VALUE_HIDE_MAX ((size_t)1 << 20)

struct server {
	struct MHD_Daemon *daemon;
	MHD_socket quiesced_fd; /* ours to close once the daemon is gone */
	/* HTTPS beside it, with --tls-cert: NULL without. */
	struct MHD_Daemon *tls_daemon;
	MHD_socket tls_quiesced_fd;
	int tls_passed; /* its socket came from systemd: left listening */
	unsigned int tls_port;
	char tls_address[128];
	char *tls_priorities; /* ours: libmicrohttpd takes a char * */
	int passed;           /* the listening socket came from systemd */
	size_t max_body;
	unsigned int port;
	unsigned int workers; /* threads libmicrohttpd runs: 1 means no pool */
	char address[128]; /* as logged: 0.0.0.0:8080, [::1]:80, unix:/run/x */
	int log_probes;
	unsigned int connection_limit; /* clients, over all workers */
	/* Shared with the pool threads. */
	atomic_ullong refused; /* clients refused at the limit */
	atomic_uint clients;   /* open client connections (not microd's own) */
	/* The watchdog's checks, one at most per worker at a time: only the
	 * thread that calls server_check_pool touches them. */
	struct probe {
		int fd; /* -1: none outstanding */
		size_t have;
		char got[16];
	} probes[CHECK_MAX];
	size_t body_budget;
	atomic_size_t body_bytes; /* reserved by buffered bodies */
	atomic_bool trim_wanted;  /* a large body was freed */
	atomic_uint peak_conns;   /* most connections since the last trim */
	atomic_bool draining;
	atomic_uint waiting; /* connections that have not begun a request yet */
	/* Failed probe answers' log lines: see probe_log_gate */
	atomic_llong probe_log_next_ns;
	atomic_ullong probe_log_skipped;
	struct app *app; /* the service's context, for its handlers; not ours */
	struct runtime *runtime; /* microd's own; not ours */
	struct pool *pool;       /* runs the ROUTE_BLOCKING handlers */
	struct gone *gone;       /* watches their clients; with the pool */
	struct waiting *heads;   /* client connections waiting for a head */
	unsigned int hide;       /* route flags left out: ROUTE_EXAMPLE, or 0 */
	/* The epoll workers' tickers (ticker.c), one each; none with poll. */
	struct tick {
		atomic_int fd;    /* MHD's end; -1: none */
		int shadow;       /* epoll set of its worker's client sockets */
		int peer;         /* ours, closed after the daemon stops */
		atomic_int state; /* enum tick_state */
		atomic_llong woken_ns;       /* when last resumed (now_ns) */
		struct MHD_Connection *conn; /* set before its first suspend */
		unsigned int
		    quiet; /* its worker's only: calls since a request */
	} ticks[CHECK_MAX];
	unsigned int n_ticks; /* set before server_start returns */
	atomic_bool ticks_stop;
	int tick_ctl; /* eventfd: wakes the watch thread; -1: none */
	pthread_t tick_thread;
	int tick_watching; /* tick_thread runs */
};

/*
 * Per connection, from NOTIFY_STARTED to NOTIFY_CLOSED. Once libmicrohttpd
 * has handed the connection to its pool thread (under the library's own
 * lock), only that thread touches it.
 */
struct conn_state {
	int began;  /* a request has begun on it */
	int ticker; /* a ticker (ticker.c): no client, never counted */
	int client; /* counted in srv->clients: not one of microd's own */
	/* A client's place among those waiting for a request head. */
	struct waiter {
		struct waiter *prev, *next; /* the list's, under its lock */
		int fd;
		int closing; /* under the lock: 1 timed out, 2 evicted */
		/* Waiting since (now_ns); WAITING_BUSY: in a request;
		 * WAITING_CLAIMED: shut down, its next request never runs.
		 * Moved only by compare-and-swap between the three. */
		atomic_llong since_ns;
		atomic_bool served; /* a request has ended on it */
	} waiter;
};

/*
 * Where a ROUTE_BLOCKING request stands. The connection is suspended from
 * JOB_QUEUED until the handler pool is done with it, and then resumed:
 * libmicrohttpd calls on_request again and the state says what to send.
 */
enum job_state {
	JOB_NONE,      /* not on the pool (yet) */
	JOB_QUEUED,    /* waiting for a handler thread */
	JOB_DONE,      /* the handler's reply is in job_reply */
	JOB_REJECTED,  /* the queue was full: 503 */
	JOB_CANCELLED, /* taken out of the queue at stop: 503 */
	JOB_ABANDONED, /* still running at stop: 503; the handler goes on */
};

/* A ROUTE_BLOCKING request's headers and query, copied for the handler
 * thread, which must not read libmicrohttpd's connection. */
struct snapshot {
	size_t n;
	struct snapshot_field {
		enum request_field kind;
		const char *name, *value;
	} * at; /* one block with the strings; owned */
};

/*
 * Per-request state: created when the request line has been read
 * (on_target). libmicrohttpd holds one reference, dropped in on_completed,
 * which it calls for every request on_target saw, also for those it refuses
 * itself; the handler pool holds another while a blocking request is on it.
 */
struct exchange {
	atomic_int refs;
	int began; /* on_request has seen it */
	struct route_result res;
	size_t max_body; /* the route's, else --max-body */
	int takes_body;  /* the route buffers the body (JSON or raw) */
	size_t expect;   /* a sized body's length + nul; 0: chunked */
	size_t nul;      /* 1: a raw body, kept with a NUL after it */
	int chunked;     /* the body is chunked: it may carry trailers */
	size_t reserved; /* of the body budget, released in on_completed */
	int over_budget; /* the budget ran out while a chunked body came */
	size_t received; /* body bytes seen so far */
	char *body;      /* buffered body, for routes that take one */
	size_t len, cap;
	const char *method; /* MHD's, valid until on_completed */
	char *path;         /* decoded from target; what routes see */
	char *params;       /* the path parameters' decoded values */
	size_t params_len;
	char peer[INET6_ADDRSTRLEN];
	/* A ROUTE_BLOCKING request on the handler pool. */
	atomic_int job_state; /* enum job_state */
	struct pool_task task;
	struct MHD_Connection *conn;
	struct app *app;
	struct runtime *runtime;
	struct snapshot snap;
	struct conn_state *cs; /* its connection's; NULL: none (no memory) */
	json_t *job_body;
	struct reply *job_reply; /* the handler's, from start_job on */
	long long queued_ms;     /* when start_job queued it (now_ms) */
	int method_head;         /* a HEAD request, served by a GET route */
	int own;    /* sent by microd itself: the pool check, watchdog */
	int ticker; /* a ticker's endless request: none of the above */
	/* The watch on the client's socket (gone.c) while the handler runs:
	 * the server's watcher (NULL: none, as for microd's own requests),
	 * the socket, and the slot, set on the handler thread and read by
	 * job_abandon at stop (NULL outside the handler). */
	struct gone *gone;
	int fd;
	_Atomic(struct gone_slot *) watch;
	long long start_ns;
	unsigned int status; /* sent; 0 while none is */
	size_t bytes;        /* body bytes of the response */
	char request_id[REQID_MAX + 1];
	struct trace trace; /* a valid traceparent's; trace_id "" if none */
	int traced;         /* its SERVER span is recorded (src/otel.h) */
	/* What the before-handler chain asked of the reply (NULL: nothing,
	 * as for every probe), and its answer when it stopped a request with
	 * no body: sent at the second call. Both owned, allocated only when
	 * needed, so the exchange stays small. */
	struct middleware_fields *fields;
	struct reply *early;
	/* The raw target as sent, cut at its '?': what the log shows. Then
	 * room for path and params. */
	char target[];
};

/* exchange.c */
void exchange_unref(struct exchange *ex);
size_t unescape(void *cls, struct MHD_Connection *conn, char *s);
enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                           const char *url, const char *method,
                           const char *version, const char *upload_data,
                           size_t *upload_data_size, void **req_cls);
void *on_target(void *cls, const char *uri, struct MHD_Connection *conn);
void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                  enum MHD_RequestTerminationCode toe);

/* head.c */
struct policy_verdict check_fields(struct MHD_Connection *conn,
                                   enum MHD_ValueKind kind, const char *method,
                                   const char *version,
                                   struct policy_framing *framing);

/* respond.c */
/* each_value's argument: fn gets every value of the field name. */
struct each_arg {
	const char *name;
	void (*fn)(void *arg, const char *value);
	void *arg;
};

const char *exchange_peer(struct exchange *ex);
const char *lookup_field(void *ctx, enum request_field field, const char *name);
enum MHD_Result each_value(void *cls, enum MHD_ValueKind kind, const char *key,
                           const char *value);
void each_field(void *ctx, enum request_field field, const char *name,
                void (*fn)(void *, const char *), void *arg);
enum MHD_Result send_reply(struct server *srv, struct MHD_Connection *conn,
                           struct exchange *ex, struct reply *rep,
                           int close_after);
enum MHD_Result send_error(struct server *srv, struct MHD_Connection *conn,
                           struct exchange *ex, unsigned int status,
                           int close_after, const char *detail);
enum MHD_Result send_busy(struct server *srv, struct MHD_Connection *conn,
                          struct exchange *ex);
void request_view(struct exchange *ex, const char *method, struct request *req);

/* blocking.c */
void job_cancel(struct pool_task *task);
void job_abandon(struct pool_task *task);
enum MHD_Result start_job(struct server *srv, struct MHD_Connection *conn,
                          struct exchange *ex, json_t *body);
enum MHD_Result on_resumed(struct server *srv, struct MHD_Connection *conn,
                           struct exchange *ex);

/* gone.c */
struct gone;
struct gone_slot;

/* Starts the thread that watches the clients of up to slots handlers at
 * once (one per handler thread); NULL (logged) on error. */
struct gone *gone_start(unsigned int slots);
/* Ends the watcher; g is freed once no slot is claimed. NULL-safe. */
void gone_stop(struct gone *g);
/*
 * On a handler thread, before its handler: a slot for the request owner,
 * its descriptor (gone_fd) reset so that no earlier request's signal
 * reaches this one; NULL when none is free. Give it back with
 * gone_release, before the connection is resumed.
 */
struct gone_slot *gone_claim(struct gone *g, const void *owner);
/* The descriptor the handler polls: readable once its client has gone. */
const int *gone_fd(const struct gone_slot *s);
/* Watches fd, the suspended connection's socket (never read, shut down or
 * closed here), until gone_release or gone_cut. */
void gone_watch(struct gone *g, struct gone_slot *s, int fd);
/*
 * At stop, from any thread, for a request about to be resumed while its
 * handler runs: stops watching its socket, for good, and signals the
 * handler, whose answer will be dropped. Nothing when s is no longer
 * owner's.
 */
void gone_cut(struct gone *g, struct gone_slot *s, const void *owner);
void gone_release(struct gone *g, struct gone_slot *s);

/* waiting.c */
struct waiting;

/* Connections shut down to make room and not yet closed by libmicrohttpd,
 * at most: past this the limit refuses again, so a flood of new connections
 * cannot run the descriptors out. */
#define WAITING_CLOSING_MAX 64

/* Starts the sweep that closes a connection whose head has not arrived
 * within timeout_ns; NULL on error. */
struct waiting *waiting_start(long long timeout_ns);
void waiting_stop(struct waiting *w); /* NULL-safe */
/* A client connection, from NOTIFY_STARTED to NOTIFY_CLOSED: its deadline
 * runs from now. */
void waiting_add(struct waiting *w, struct waiter *c, int fd);
void waiting_remove(struct waiting *w, struct waiter *c);
/*
 * At the connection limit: shuts down the connection that has waited
 * longest for a head, so a new one can take its place. 1 when one was, 0
 * when every connection is in a request (or too many are closing already).
 */
int waiting_evict(struct waiting *w);

#define WAITING_BUSY 0LL
#define WAITING_CLAIMED (-1LL)

/*
 * A request head has arrived whole: no deadline until the request ends.
 * 0, or -1 when the connection was shut down first (past its deadline, or
 * to make room): the request must not run, as its answer cannot be sent.
 * One compare-and-swap decides between the two, so a request that runs is
 * never cut by them.
 */
static inline int
waiting_busy(struct waiter *c)
{
	long long v = atomic_load_explicit(&c->since_ns, memory_order_relaxed);

	while (v != WAITING_CLAIMED)
		if (atomic_compare_exchange_weak_explicit(
		        &c->since_ns, &v, WAITING_BUSY, memory_order_relaxed,
		        memory_order_relaxed))
			return 0;
	return -1;
}

/* The request has ended: the next head's deadline runs from now. */
static inline void
waiting_idle(struct waiter *c, long long now)
{
	long long busy = WAITING_BUSY;

	atomic_store_explicit(&c->served, 1, memory_order_relaxed);
	(void)atomic_compare_exchange_strong_explicit(&c->since_ns, &busy, now,
	                                              memory_order_relaxed,
	                                              memory_order_relaxed);
}

/* selfcall.c */
int selfcall_is_own_peer(const struct sockaddr *addr);
int is_own_connection(struct MHD_Connection *conn);
/* A socketpair whose one end (*mhd_fd) MHD_add_connection gives to worker
 * want of n; returns the other end, or -1 with errno set. */
int selfcall_pair(unsigned int n, unsigned int want, int *mhd_fd);
/* Hands fd to the HTTP daemon as one of microd's own; 0 or -1. fd is the
 * library's from here on, even on failure. */
int selfcall_add(struct server *srv, int fd);

/* ticker.c */
enum tick_state {
	TICK_AWAKE,     /* on its worker's ready list: its waits do not block */
	TICK_SUSPENDED, /* by its own handler; the watch thread polls */
	TICK_WOKEN,     /* resumed, its handler not run yet */
};

/* One ticker per worker of the HTTP daemon (epoll only), and the thread
 * that watches them; 0, or -1 logged. ticker_stop, ticker_close undo it. */
int ticker_start(struct server *srv);
/* Whether fd is a ticker's (for NOTIFY_STARTED, on microd's own). */
int ticker_is(struct server *srv, int fd);
/* A client connection on this thread: into its worker's shadow set. */
void ticker_shadow(int fd);
/* A request has begun on this thread: its worker's ticker stays awake. */
void ticker_poke(void);
/* The ticker's access handler; first: the call with its head. */
enum MHD_Result ticker_call(struct server *srv, struct MHD_Connection *conn,
                            int first);
/* Before MHD_stop_daemon: wakes every ticker, which then closes. */
void ticker_stop(struct server *srv);
/* After MHD_stop_daemon: closes microd's ends. */
void ticker_close(struct server *srv);

#endif
