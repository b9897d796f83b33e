/* SPDX-License-Identifier: MIT */
/* clock.h -- the one monotonic clock helper */
#ifndef MICROD_CLOCK_H
#define MICROD_CLOCK_H

/* CLOCK_MONOTONIC in nanoseconds, and in milliseconds; 0 if unreadable. */
long long now_ns(void);
long long now_ms(void);

#endif
