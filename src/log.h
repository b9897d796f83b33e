/* SPDX-License-Identifier: MIT */
/* log.h -- leveled log lines to stderr, never blocking the caller */
#ifndef MICROD_LOG_H
#define MICROD_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

/* One request, as the access log writes it. Strings may be NULL. */
struct access_entry {
	const char *method, *path, *route, *remote, *request_id, *user_agent;
	/* A valid traceparent's fields (OpenTelemetry's names), or NULL. */
	const char *trace_id, *span_id, *trace_flags;
	unsigned int status;
	unsigned long long bytes;
	unsigned long long skipped; /* like lines left out before this one */
	double duration_ms;
};

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_level_parse(const char *name);
/* Parses "json" or "text"; -1 for anything else. */
int log_format_parse(const char *name);
/*
 * Call once before threads start. Under journald, lines start with a <N>
 * syslog priority and carry no timestamp of their own.
 */
void log_setup(enum log_level level, enum log_format format, int journald);
void log_set_level(enum log_level level);
/*
 * From log_start() on, lines go through a bounded buffer to a writer thread,
 * so no caller waits on stderr; lines that find it full are dropped and
 * counted. log_stop() flushes what is buffered, waiting at most timeout_ms:
 * 0, or -1 when stderr did not take it all in time. Both: main thread only.
 */
int log_start(void);
int log_stop(int timeout_ms);
/* Lines dropped because stderr was not read fast enough, since start. */
unsigned long long log_dropped(void);
int log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * A line any client can cause (libmicrohttpd's messages): like log_msg, but
 * like the access log it may not use the ring's reserve, so a flood of them
 * cannot crowd out the lines that explain it.
 */
void log_peer(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line per request; every client string is escaped, one line always. */
void log_access(const struct access_entry *e);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
