/* SPDX-License-Identifier: MIT */
/* clock.c -- the one monotonic clock helper */
#include "clock.h"

#include <time.h>

long long
now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long
now_ms(void)
{
	return now_ns() / 1000000;
}
