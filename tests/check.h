/* SPDX-License-Identifier: MIT */
/* check.h -- TAP output for the test programs: ok(), is(), is_str() */
#ifndef MICROD_CHECK_H
#define MICROD_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int check_count, check_failed;

static void __attribute__((format(printf, 2, 3)))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	check_count++;
	if (!cond)
		check_failed++;
	printf("%sok %d - ", cond ? "" : "not ", check_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define is(got, want, ...)                                                     \
	do {                                                                   \
		long long is_g_ = (long long)(got), is_w_ = (long long)(want); \
		ok(is_g_ == is_w_, __VA_ARGS__);                               \
		if (is_g_ != is_w_)                                            \
			printf("#   got %lld, want %lld\n", is_g_, is_w_);     \
	} while (0)

#define is_str(got, want, ...)                                                 \
	do {                                                                   \
		const char *is_g_ = (got), *is_w_ = (want);                    \
		int is_ok_ = is_g_ != NULL && strcmp(is_g_, is_w_) == 0;       \
		ok(is_ok_, __VA_ARGS__);                                       \
		if (!is_ok_)                                                   \
			printf("#   got '%s', want '%s'\n",                    \
			       is_g_ != NULL ? is_g_ : "(null)", is_w_);       \
	} while (0)

static void __attribute__((format(printf, 1, 2), unused))
diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Prints the plan; the exit status says whether everything passed. */
static int
done_testing(void)
{
	printf("1..%d\n", check_count);
	return check_failed == 0 ? 0 : 1;
}

#endif
