/* SPDX-License-Identifier: MIT */
/* reqid.c -- request ids: accept a client's, or make one */
#include "reqid.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/*
 * Per thread: a xoshiro128-style generator seeded once from getrandom(), so
 * an id costs no system call. Ids need to be unique, not secret.
 */
static _Thread_local uint64_t rng[2];
static _Thread_local int rng_seeded;

static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
seed(void)
{
	if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
		struct timespec ts = {0, 0};
		uint64_t x;

		/* No entropy to be had: time and this thread's address. */
		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
		x ^= (uint64_t)(uintptr_t)&rng;
		rng[0] = splitmix(&x);
		rng[1] = splitmix(&x);
	}
	if (rng[0] == 0 && rng[1] == 0)
		rng[1] = 1;
	rng_seeded = 1;
}

/* xorshift128+ */
static uint64_t
next(void)
{
	uint64_t s1 = rng[0];
	const uint64_t s0 = rng[1];

	rng[0] = s0;
	s1 ^= s1 << 23;
	rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
	return rng[1] + s0;
}

void
reqid_new(char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t w[2];

	if (!rng_seeded)
		seed();
	w[0] = next();
	w[1] = next();
	for (int i = 0; i < 32; i++)
		out[i] = hex[(w[i / 16] >> ((i % 16) * 4)) & 0xf];
	out[32] = '\0';
}

uint64_t
reqid_random(void)
{
	if (!rng_seeded)
		seed();
	return next();
}

int
reqid_valid(const char *id)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
	                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
	size_t n;

	if (id == NULL)
		return 0;
	n = strspn(id, ok);
	return n > 0 && n <= REQID_MAX && id[n] == '\0';
}
