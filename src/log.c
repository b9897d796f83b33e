/* SPDX-License-Identifier: MIT */
/*
 * log.c -- log lines (JSON or logfmt) to stderr through a bounded buffer
 *
 * A thread that logs formats its line and copies it into a ring buffer; one
 * writer thread drains the ring to stderr. No request thread ever waits on
 * stderr: when its reader stalls (a slow log shipper, journald under
 * pressure) and the ring is full, lines are dropped and counted, and once the
 * log flows again one line says how many. Before log_start() and after
 * log_stop() lines are written directly, as at start-up and exit nothing else
 * is running.
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

/*
 * A line longer than PIPE_BUF is cut (and says so), so each line stays one
 * atomic write to a pipe; each value is capped too.
 */
#define LINE_MAX_BYTES PIPE_BUF
#define VALUE_MAX_BYTES 1024

/*
 * The ring: 256 KiB, about 1,000 access-log lines. Access-log lines may fill
 * only RING_ACCESS_BYTES of it, so a flood of requests cannot crowd out the
 * state changes, warnings and errors that explain the flood.
 */
#define RING_BYTES ((size_t)256 << 10)
#define RING_ACCESS_BYTES (RING_BYTES - ((size_t)64 << 10))

/* What the writer takes from the ring for one write(): a pipe's atomic
 * write. */
#define WRITE_CHUNK ((size_t)LINE_MAX_BYTES)

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the writer: lines are waiting, or stop */
	pthread_cond_t drained; /* log_stop(): the ring is empty */
	char *buf;              /* RING_BYTES, NULL while not started */
	size_t head, used;      /* next byte to write out; bytes held */
	unsigned long long unreported; /* dropped since the last report */
	int stop, writing;
	pthread_t thread;
} ring = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .drained = PTHREAD_COND_INITIALIZER};

/* Shared: every line dropped since start, for /metrics. */
static atomic_ullong dropped_total;

/* Shared: set once at start-up, read by every pool thread. */
static _Atomic int log_threshold = LOG_INFO;
static _Atomic int log_format = LOG_FORMAT_JSON;
static _Atomic int log_journald; /* journald adds time; wants <N> */

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug */
static const char level_prio[] = {'3', '4', '6', '7'};

struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	int full;      /* out of room: nothing more is added */
	int in_str;    /* inside a quoted value */
	int truncated; /* a value or the line was shortened */
};

/* Room kept for closing a line that ran out of space. */
#define LINE_RESERVE 48

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

int
log_format_parse(const char *name)
{
	if (strcmp(name, "json") == 0)
		return LOG_FORMAT_JSON;
	if (strcmp(name, "text") == 0)
		return LOG_FORMAT_TEXT;
	return -1;
}

void
log_setup(enum log_level level, enum log_format format, int journald)
{
	atomic_store(&log_threshold, (int)level);
	atomic_store(&log_format, (int)format);
	atomic_store(&log_journald, journald);
}

void
log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

int
log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_threshold);
}

/* Adds all of s or, when it does not fit, nothing: no escape is split. */
static void
put(struct line *l, const char *s, size_t n)
{
	if (l->full || l->len + n > sizeof(l->buf) - LINE_RESERVE) {
		l->full = 1;
		l->truncated = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

/*
 * A JSON string body: quotes, backslashes and control characters (C0, DEL
 * and C1) escaped,
 * invalid UTF-8 replaced by U+FFFD, so any client string yields valid JSON
 * on one line. Also the quoted-value form of logfmt.
 */
static void
put_escaped(struct line *l, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0;

	if (n > VALUE_MAX_BYTES) {
		n = VALUE_MAX_BYTES;
		l->truncated = 1;
	}
	while (i < n) {
		size_t run = 0, k;
		char esc[8];

		while (i + run < n && s[i + run] >= 0x20 && s[i + run] < 0x7f &&
		       s[i + run] != '"' && s[i + run] != '\\')
			run++;
		put(l, (const char *)s + i, run);
		i += run;
		if (i >= n)
			break;
		if (s[i] == '"' || s[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)s[i];
			put(l, esc, 2);
			i++;
		} else if (s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
			put(l, esc, 6);
			i++;
		} else if (s[i] == 0xc2 && i + 1 < n && s[i + 1] >= 0x80 &&
		           s[i + 1] <= 0x9f) {
			/* C1 controls (U+0080-U+009F): some terminals act on
			 * U+009B (CSI), so they are escaped like C0. */
			snprintf(esc, sizeof(esc), "\\u%04x", s[i + 1]);
			put(l, esc, 6);
			i += 2;
		} else if ((k = utf8_seq_len(s + i, n - i)) > 0) {
			put(l, (const char *)s + i, k);
			i += k;
		} else {
			puts_(l, "\\ufffd");
			i++;
		}
	}
}

/* `,"key":` or ` key=`, added whole or not at all. */
static void
put_key(struct line *l, const char *key, int quote)
{
	char k[64];
	int n;

	if (atomic_load(&log_format) == LOG_FORMAT_JSON)
		n = snprintf(k, sizeof(k), ",\"%s\":%s", key,
		             quote ? "\"" : "");
	else
		n = snprintf(k, sizeof(k), " %s=%s", key, quote ? "\"" : "");
	if (n > 0 && (size_t)n < sizeof(k))
		put(l, k, (size_t)n);
}

/* Values logfmt can show without quotes. */
static int
is_bare(const char *v)
{
	static const char ok[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR"
	    "STUVWXYZ0123456789-._:/[]+,;@%?&*!()<>~^|{}'#$";

	return *v != '\0' && strspn(v, ok) == strlen(v);
}

static void
field_str(struct line *l, const char *key, const char *value)
{
	int quote;

	if (value == NULL)
		value = "";
	quote = atomic_load(&log_format) == LOG_FORMAT_JSON || !is_bare(value);
	put_key(l, key, quote);
	if (l->full)
		return; /* nothing more goes in; in_str stays as it was */
	if (!quote) {
		puts_(l, value);
		return;
	}
	l->in_str = 1; /* the key opened a string */
	put_escaped(l, value);
	puts_(l, "\"");
	if (!l->full)
		l->in_str = 0;
}

static void __attribute__((format(printf, 3, 4)))
field_num(struct line *l, const char *key, const char *fmt, ...)
{
	char num[64], f[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(num, sizeof(num), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(num))
		return;
	/* Key and number in one piece, so a full line never ends in "key:". */
	if (atomic_load(&log_format) == LOG_FORMAT_JSON)
		n = snprintf(f, sizeof(f), ",\"%s\":%s", key, num);
	else
		n = snprintf(f, sizeof(f), " %s=%s", key, num);
	if (n > 0 && (size_t)n < sizeof(f))
		put(l, f, (size_t)n);
}

static void
begin(struct line *l, enum log_level level)
{
	int json = atomic_load(&log_format) == LOG_FORMAT_JSON;

	l->len = 0;
	l->full = 0;
	l->in_str = 0;
	l->truncated = 0;
	if (atomic_load(&log_journald)) {
		char prio[4] = {'<', level_prio[level], '>', '\0'};

		puts_(l, prio);
	} else {
		struct timespec now = {0, 0};
		struct tm tm;
		char ts[96];

		if (clock_gettime(CLOCK_REALTIME, &now) != 0 ||
		    gmtime_r(&now.tv_sec, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		         tm.tm_hour, tm.tm_min, tm.tm_sec,
		         now.tv_nsec / 1000000L);
		puts_(l, json ? "{\"ts\":\"" : "ts=");
		puts_(l, ts);
		puts_(l, json ? "\",\"level\":\"" : " level=");
		puts_(l, level_names[level]);
		puts_(l, json ? "\"" : "");
		return;
	}
	puts_(l, json ? "{\"level\":\"" : "level=");
	puts_(l, level_names[level]);
	puts_(l, json ? "\"" : "");
}

static void
finish(struct line *l)
{
	int json = atomic_load(&log_format) == LOG_FORMAT_JSON;

	const char *tail;
	size_t n;

	/* The reserve always has room for this tail. */
	if (l->truncated)
		tail = json ? (l->in_str ? "\",\"truncated\":true}\n"
		                         : ",\"truncated\":true}\n")
		            : (l->in_str ? "\" truncated=true\n"
		                         : " truncated=true\n");
	else
		tail = json ? "}\n" : "\n";
	n = strlen(tail);
	memcpy(l->buf + l->len, tail, n);
	l->len += n;
}

/* Writes all of buf to stderr, through short writes and EINTR; 0 or -1. */
static int
write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1; /* nowhere left to report it */
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Hands a finished line to the writer, or drops and counts it when the ring
 * has no room: never waits on stderr. access marks an access-log line, which
 * may not use the ring's reserve.
 */
static void
emit(const struct line *l, int access)
{
	size_t room = access ? RING_ACCESS_BYTES : RING_BYTES;

	pthread_mutex_lock(&ring.mu);
	if (ring.buf == NULL) { /* before log_start, after log_stop */
		pthread_mutex_unlock(&ring.mu);
		write_all(l->buf, l->len);
		return;
	}
	if (ring.used + l->len > room) {
		ring.unreported++;
		pthread_mutex_unlock(&ring.mu);
		atomic_fetch_add(&dropped_total, 1);
		return;
	}
	for (size_t done = 0; done < l->len;) {
		size_t at = (ring.head + ring.used) % RING_BYTES;
		size_t n = RING_BYTES - at;

		if (n > l->len - done)
			n = l->len - done;
		memcpy(ring.buf + at, l->buf + done, n);
		ring.used += n;
		done += n;
	}
	pthread_cond_signal(&ring.wake);
	pthread_mutex_unlock(&ring.mu);
}

static void format_msg(struct line *l, enum log_level level, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

/* The writer thread: drains the ring to stderr, reports what was dropped. */
static void *
writer(void *arg)
{
	char *chunk = arg; /* WRITE_CHUNK bytes, the thread's own */
	struct line report;

	pthread_mutex_lock(&ring.mu);
	for (;;) {
		unsigned long long lost;
		size_t n;

		while (ring.used == 0 && ring.unreported == 0 && !ring.stop)
			pthread_cond_wait(&ring.wake, &ring.mu);
		if (ring.used == 0 && ring.unreported == 0)
			break; /* stop, and nothing left */
		/*
		 * At most PIPE_BUF bytes, ending at a line end: each write()
		 * is then atomic on a pipe, and no line is ever split between
		 * two, whoever else writes to it. Every line fits.
		 */
		n = ring.used < LINE_MAX_BYTES ? ring.used : LINE_MAX_BYTES;
		for (size_t i = 0; i < n; i++)
			chunk[i] = ring.buf[(ring.head + i) % RING_BYTES];
		while (n > 0 && chunk[n - 1] != '\n')
			n--;
		if (n == 0) /* no line end: cannot be, but never stall */
			n = ring.used < LINE_MAX_BYTES ? ring.used
			                               : LINE_MAX_BYTES;
		ring.head = (ring.head + n) % RING_BYTES;
		ring.used -= n;
		/* Once the ring is empty, the log flows again: say what it
		 * lost meanwhile. */
		lost = ring.used == 0 ? ring.unreported : 0;
		ring.unreported -= lost;
		ring.writing = 1;
		pthread_mutex_unlock(&ring.mu);
		write_all(chunk, n);
		if (lost > 0) {
			format_msg(&report, LOG_WARN,
			           "log: %llu lines dropped while stderr was "
			           "not read",
			           lost);
			write_all(report.buf, report.len);
		}
		pthread_mutex_lock(&ring.mu);
		ring.writing = 0;
		if (ring.used == 0)
			pthread_cond_broadcast(&ring.drained);
	}
	pthread_mutex_unlock(&ring.mu);
	free(chunk);
	return NULL;
}

int
log_start(void)
{
	char *buf = malloc(RING_BYTES), *chunk = malloc(WRITE_CHUNK);
	int err;

	if (buf == NULL || chunk == NULL)
		goto fail;
	pthread_mutex_lock(&ring.mu);
	ring.buf = buf;
	ring.head = ring.used = 0;
	ring.stop = 0;
	pthread_mutex_unlock(&ring.mu);
	err = pthread_create(&ring.thread, NULL, writer, chunk);
	if (err == 0)
		return 0; /* chunk is the writer's now */
	pthread_mutex_lock(&ring.mu);
	ring.buf = NULL;
	pthread_mutex_unlock(&ring.mu);
fail:
	free(buf);
	free(chunk);
	return -1;
}

int
log_stop(int timeout_ms)
{
	struct timespec until;
	int flushed, err = 0;
	char *buf;

	pthread_mutex_lock(&ring.mu);
	if (ring.buf == NULL) {
		pthread_mutex_unlock(&ring.mu);
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	ring.stop = 1;
	pthread_cond_signal(&ring.wake);
	while ((ring.used > 0 || ring.writing) && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&ring.drained, &ring.mu, &until);
	flushed = ring.used == 0 && !ring.writing;
	pthread_mutex_unlock(&ring.mu);
	if (!flushed)
		return -1; /* the writer is stuck in write(); exit leaves it */
	pthread_join(ring.thread, NULL);
	pthread_mutex_lock(&ring.mu);
	buf = ring.buf;
	ring.buf = NULL;
	pthread_mutex_unlock(&ring.mu);
	free(buf);
	return 0;
}

unsigned long long
log_dropped(void)
{
	return atomic_load(&dropped_total);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

static void
vformat_msg(struct line *l, enum log_level level, const char *fmt, va_list ap)
{
	char msg[1024];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (n < 0)
		msg[0] = '\0';
	while (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[--n] = '\0'; /* libmicrohttpd's messages bring their own */
	begin(l, level);
	field_str(l, "msg", msg);
	finish(l);
}

static void
format_msg(struct line *l, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat_msg(l, level, fmt, ap);
	va_end(ap);
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	struct line l;

	if (!log_enabled(level))
		return;
	vformat_msg(&l, level, fmt, ap);
	emit(&l, 0);
}

void
log_peer(enum log_level level, const char *fmt, ...)
{
	struct line l;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vformat_msg(&l, level, fmt, ap);
	va_end(ap);
	emit(&l, 1);
}

void
log_access(const struct access_entry *e)
{
	enum log_level level = e->status >= 500 ? LOG_WARN : LOG_INFO;
	struct line l;

	if (!log_enabled(level))
		return;
	begin(&l, level);
	field_str(&l, "msg", "request");
	field_str(&l, "method", e->method);
	field_str(&l, "path", e->path);
	field_str(&l, "route", e->route);
	field_num(&l, "status", "%u", e->status);
	field_num(&l, "bytes", "%llu", e->bytes);
	field_num(&l, "duration_ms", "%.3f", e->duration_ms);
	field_str(&l, "remote", e->remote);
	field_str(&l, "request_id", e->request_id);
	if (e->user_agent != NULL) /* "when sent" */
		field_str(&l, "user_agent", e->user_agent);
	if (e->trace_id != NULL) {
		field_str(&l, "trace_id", e->trace_id);
		if (e->span_id != NULL && e->span_id[0] != '\0')
			field_str(&l, "span_id", e->span_id); /* the caller's */
		field_str(&l, "trace_flags", e->trace_flags);
	}
	if (e->skipped > 0)
		field_num(&l, "skipped", "%llu", e->skipped);
	finish(&l);
	emit(&l, 1);
}
