/* SPDX-License-Identifier: MIT */
/* log.c -- leveled log lines to stderr, one write() per line */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Shared: set once at start-up, read by every pool thread. */
static _Atomic int log_threshold = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++)
		if (strcmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
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
	char line[1024];
	struct timespec now = {0, 0};
	struct tm tm;
	int head, body;
	size_t len;

	if (!log_enabled(level))
		return;
	if (clock_gettime(CLOCK_REALTIME, &now) != 0 ||
	    gmtime_r(&now.tv_sec, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	head = snprintf(line, sizeof(line),
	                "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ microd %s: ",
	                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	                tm.tm_hour, tm.tm_min, tm.tm_sec,
	                now.tv_nsec / 1000000L, level_names[level]);
	if (head < 0)
		return;
	body = vsnprintf(line + head, sizeof(line) - (size_t)head, fmt, ap);
	if (body < 0)
		return;
	len = (size_t)head + (size_t)body;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* truncated: keep it one line */
	while (len > (size_t)head && line[len - 1] == '\n')
		len--; /* libmicrohttpd's messages bring their own */
	for (size_t i = (size_t)head; i < len; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' '; /* one event, one line */
	line[len++] = '\n';
	/* One write per line, so lines from pool threads never interleave. */
	if (write(STDERR_FILENO, line, len) < 0)
		return; /* nowhere left to report it */
}
