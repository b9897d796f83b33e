/* SPDX-License-Identifier: MIT */
/* clock.h -- the one clock helper: monotonic, and the wall clock for "when" */
#ifndef MICROD_CLOCK_H
#define MICROD_CLOCK_H

/* CLOCK_MONOTONIC in nanoseconds, and in milliseconds; 0 if unreadable. */
long long now_ns(void);
long long now_ms(void);

/* CLOCK_REALTIME in milliseconds since the Unix epoch, for "when": never
 * for measuring time. */
long long wall_ms(void);

/* The same in nanoseconds, for the span times OTLP carries. */
long long wall_ns(void);

#endif
