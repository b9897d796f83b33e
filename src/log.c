/* SPDX-License-Identifier: MIT */
/* log.c -- log lines (JSON or logfmt) to stderr, one write() per line */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

/* A line longer than this is cut (and says so); each value is capped too. */
#define LINE_MAX_BYTES 8192
#define VALUE_MAX_BYTES 2048

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
	if (!quote) {
		puts_(l, value);
		return;
	}
	l->in_str = !l->full;
	put_escaped(l, value);
	puts_(l, "\"");
	l->in_str = l->in_str && l->full;
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
	/* One write per line, so lines from pool threads never interleave. */
	if (write(STDERR_FILENO, l->buf, l->len) < 0)
		return; /* nowhere left to report it */
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	struct line l;
	char msg[1024];
	int n;

	if (!log_enabled(level))
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	while (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[--n] = '\0'; /* libmicrohttpd's messages bring their own */
	begin(&l, level);
	field_str(&l, "msg", msg);
	finish(&l);
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
	field_str(&l, "user_agent", e->user_agent);
	finish(&l);
}
