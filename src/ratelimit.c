/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.c -- per-client request rate limits (GCRA) in a table of fixed
 * size, and the client's key from the peer address and X-Forwarded-For
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "number.h"

#define NS_PER_S 1000000000LL
#define NOW_MAX (1LL << 62) /* with burst * T <= 1e18, TAT < 2^63 */
#define ADDR_TEXT_MAX 64    /* buffer for one address: 63 bytes and a NUL */

struct slot {
	unsigned char key[RATELIMIT_KEY_LEN];
	long long tat; /* theoretical arrival time, ns */
	int used;
};

/* A set's own cache lines: threads on different sets never share one. */
struct set {
	_Alignas(64) pthread_mutex_t lock; /* guards slot[] */
	struct slot slot[RATELIMIT_SET_SIZE];
};

struct ratelimit {
	long long t;   /* emission interval, ns */
	long long tau; /* burst * t: the most debt a key may carry */
	size_t nsets;
	uint64_t k0, k1; /* SipHash key */
	atomic_ullong evicted, evicted_in_debt;
	struct set *sets;
};

static uint64_t
rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void
sipround(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = rotl(v[1], 13) ^ v[0];
	v[0] = rotl(v[0], 32);
	v[2] += v[3];
	v[3] = rotl(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = rotl(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = rotl(v[1], 17) ^ v[2];
	v[2] = rotl(v[2], 32);
}

static uint64_t
load_le64(const unsigned char *p)
{
	uint64_t x = 0;

	for (int i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

/* SipHash-2-4 of a 16-byte message. */
static uint64_t
siphash16(uint64_t k0, uint64_t k1, const unsigned char m[16])
{
	uint64_t v[4] = {
	    k0 ^ 0x736f6d6570736575ULL,
	    k1 ^ 0x646f72616e646f6dULL,
	    k0 ^ 0x6c7967656e657261ULL,
	    k1 ^ 0x7465646279746573ULL,
	};
	uint64_t w[3] = {load_le64(m), load_le64(m + 8), (uint64_t)16 << 56};

	for (int i = 0; i < 3; i++) {
		v[3] ^= w[i];
		sipround(v);
		sipround(v);
		v[0] ^= w[i];
	}
	v[2] ^= 0xff;
	for (int i = 0; i < 4; i++)
		sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

struct ratelimit *
ratelimit_new(double rate, unsigned int burst, size_t slots,
              const unsigned char seed[RATELIMIT_SEED_LEN])
{
	struct ratelimit *rl = NULL;
	size_t i, inited = 0;
	int err;

	/* Written so that NaN fails every test. */
	if (!(rate >= RATELIMIT_RATE_MIN && rate <= RATELIMIT_RATE_MAX) ||
	    burst < 1 || burst > RATELIMIT_BURST_MAX || slots < 1 ||
	    slots > RATELIMIT_SLOTS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		goto fail;
	rl->t = (long long)(1e9 / rate + 0.5);
	if (rl->t < 1)
		rl->t = 1; /* cannot happen within the range; stays safe */
	rl->tau = (long long)burst * rl->t;
	rl->nsets = (slots + RATELIMIT_SET_SIZE - 1) / RATELIMIT_SET_SIZE;
	rl->k0 = load_le64(seed);
	rl->k1 = load_le64(seed + 8);
	atomic_init(&rl->evicted, 0);
	atomic_init(&rl->evicted_in_debt, 0);
	/* sizeof(struct set) is a multiple of its alignment, as aligned_alloc
	 * wants of the size. */
	rl->sets =
	    aligned_alloc(_Alignof(struct set), rl->nsets * sizeof(struct set));
	if (rl->sets == NULL)
		goto fail;
	memset(rl->sets, 0, rl->nsets * sizeof(struct set));
	for (inited = 0; inited < rl->nsets; inited++) {
		err = pthread_mutex_init(&rl->sets[inited].lock, NULL);
		if (err != 0) {
			errno = err;
			goto fail;
		}
	}
	return rl;
fail:
	err = errno;
	if (rl != NULL) {
		for (i = 0; i < inited; i++)
			pthread_mutex_destroy(&rl->sets[i].lock);
		free(rl->sets);
		free(rl);
	}
	errno = err;
	return NULL;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < rl->nsets; i++)
		pthread_mutex_destroy(&rl->sets[i].lock);
	free(rl->sets);
	free(rl);
}

size_t
ratelimit_slots(const struct ratelimit *rl)
{
	return rl->nsets * RATELIMIT_SET_SIZE;
}

size_t
ratelimit_set_of(const struct ratelimit *rl,
                 const unsigned char key[RATELIMIT_KEY_LEN])
{
	return (size_t)(siphash16(rl->k0, rl->k1, key) % rl->nsets);
}

void
ratelimit_stats(struct ratelimit *rl, unsigned long long *evicted_total,
                unsigned long long *evicted_in_debt)
{
	if (evicted_total != NULL)
		*evicted_total =
		    atomic_load_explicit(&rl->evicted, memory_order_relaxed);
	if (evicted_in_debt != NULL)
		*evicted_in_debt = atomic_load_explicit(&rl->evicted_in_debt,
		                                        memory_order_relaxed);
}

/* key's slot in s, taking one for it (with a full bucket) if it has none. */
static struct slot *
set_slot(struct ratelimit *rl, struct set *s, const unsigned char *key,
         long long now)
{
	struct slot *victim = NULL;

	for (int i = 0; i < RATELIMIT_SET_SIZE; i++) {
		struct slot *e = &s->slot[i];

		if (!e->used) {
			if (victim == NULL || victim->used)
				victim = e;
			continue;
		}
		if (memcmp(e->key, key, RATELIMIT_KEY_LEN) == 0)
			return e;
		/* Free first, then full (TAT <= now), then the least debt:
		 * among used slots the smallest TAT is all three in turn. */
		if (victim == NULL || (victim->used && e->tat < victim->tat))
			victim = e;
	}
	if (victim->used) {
		atomic_fetch_add_explicit(&rl->evicted, 1,
		                          memory_order_relaxed);
		if (victim->tat > now)
			atomic_fetch_add_explicit(&rl->evicted_in_debt, 1,
			                          memory_order_relaxed);
	}
	memcpy(victim->key, key, RATELIMIT_KEY_LEN);
	victim->tat = now; /* a full bucket */
	victim->used = 1;
	return victim;
}

/* Whole seconds in ns >= 0, rounded up. */
static long long
ceil_s(long long ns)
{
	return (ns + NS_PER_S - 1) / NS_PER_S;
}

int
ratelimit_take(struct ratelimit *rl, const unsigned char key[RATELIMIT_KEY_LEN],
               long long now_ns, struct ratelimit_verdict *out)
{
	struct ratelimit_verdict v = {1, 0, 0, 0};
	long long now = now_ns < 0 ? 0 : now_ns > NOW_MAX ? NOW_MAX : now_ns;
	struct set *s = &rl->sets[ratelimit_set_of(rl, key)];
	struct slot *e;
	long long debt; /* TAT - now: how far the bucket is from full */

	/* Only a corrupt mutex fails to lock: the limit then lets the
	 * request through rather than refuse every client in the set. */
	if (pthread_mutex_lock(&s->lock) != 0)
		goto out;
	e = set_slot(rl, s, key, now);
	debt = e->tat > now ? e->tat - now : 0;
	v.allowed = debt <= rl->tau - rl->t;
	if (v.allowed) {
		debt += rl->t;
		e->tat = now + debt; /* <= 2^62 + 1e18: no overflow */
	}
	if (pthread_mutex_unlock(&s->lock) != 0)
		abort(); /* a mutex locked here: cannot fail */
	/* The state is read; the rest is arithmetic on local values. debt
	 * exceeds tau only when a caller's now is behind another's. */
	if (debt <= rl->tau)
		v.remaining = (unsigned int)((rl->tau - debt) / rl->t);
	v.reset_s = ceil_s(debt);
	/* Refused: debt > tau - t, so the wait is at least 1 ns, 1 s. */
	if (!v.allowed)
		v.retry_after_s = ceil_s(debt - (rl->tau - rl->t));
out:
	if (out != NULL)
		*out = v;
	return v.allowed;
}

/* A NUL-terminated address, no brackets, into out; v4 says it was IPv4. */
static int
addr_text(const char *s, unsigned char out[RATELIMIT_KEY_LEN], int *v4)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
	                                         0, 0, 0, 0, 0xff, 0xff};
	unsigned char a4[4];

	if (inet_pton(AF_INET, s, a4) == 1) {
		memcpy(out, mapped, sizeof(mapped));
		memcpy(out + sizeof(mapped), a4, sizeof(a4));
		*v4 = 1;
		return 0;
	}
	*v4 = 0;
	return inet_pton(AF_INET6, s, out) == 1 ? 0 : -1;
}

int
ratelimit_addr_parse(const char *s, size_t n,
                     unsigned char out[RATELIMIT_KEY_LEN])
{
	char buf[ADDR_TEXT_MAX];
	unsigned char a[RATELIMIT_KEY_LEN];
	int brackets, v4;

	if (n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
		return -1;
	brackets = s[0] == '[';
	if (brackets && (n < 2 || s[n - 1] != ']'))
		return -1;
	memcpy(buf, s + brackets, n - 2 * (size_t)brackets);
	buf[n - 2 * (size_t)brackets] = '\0';
	if (addr_text(buf, a, &v4) != 0 || (brackets && v4))
		return -1;
	memcpy(out, a, sizeof(a));
	return 0;
}

/* Whether a has no bit set past the first prefix bits. */
static int
host_bits_clear(const unsigned char a[RATELIMIT_KEY_LEN], unsigned int prefix)
{
	for (unsigned int i = prefix / 8; i < RATELIMIT_KEY_LEN; i++) {
		unsigned int keep = i == prefix / 8 ? prefix % 8 : 0;

		if ((a[i] & (0xffu >> keep)) != 0)
			return 0;
	}
	return 1;
}

int
ratelimit_parse_cidr(const char *s, struct cidr *out, const char **why)
{
	char buf[ADDR_TEXT_MAX];
	const char *slash, *reason = NULL;
	size_t alen;
	uintmax_t prefix;
	int v4;

	memset(out, 0, sizeof(*out));
	if (s == NULL || *s == '\0') {
		reason = "empty";
		goto out;
	}
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (alen >= sizeof(buf)) {
		reason = "not an IPv4 or IPv6 address";
		goto out;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (addr_text(buf, out->addr, &v4) != 0) {
		reason = "not an IPv4 or IPv6 address";
		goto out;
	}
	if (slash == NULL) {
		prefix = v4 ? 32 : 128;
	} else if (strlen(slash + 1) > 3 ||
	           number_parse(slash + 1, UINTMAX_MAX, &prefix) != 0) {
		reason = "the prefix length is not 1 to 3 decimal digits";
		goto out;
	} else if (v4 && prefix > 32) {
		reason = "an IPv4 prefix length over 32";
		goto out;
	} else if (prefix > 128) {
		reason = "an IPv6 prefix length over 128";
		goto out;
	}
	out->prefix = (unsigned int)prefix + (v4 ? 96u : 0u);
	if (!host_bits_clear(out->addr, out->prefix))
		reason = "host bits set past the prefix length";
out:
	if (reason != NULL) {
		memset(out, 0, sizeof(*out));
		if (why != NULL)
			*why = reason;
		return -1;
	}
	return 0;
}

static int
cidr_contains(const struct cidr *c, const unsigned char a[RATELIMIT_KEY_LEN])
{
	unsigned int whole = c->prefix / 8, bits = c->prefix % 8;
	unsigned int mask = (0xff00u >> bits) & 0xffu;

	if (memcmp(c->addr, a, whole) != 0)
		return 0;
	return bits == 0 || ((a[whole] ^ c->addr[whole]) & mask) == 0;
}

static int
trusted_addr(const unsigned char a[RATELIMIT_KEY_LEN],
             const struct cidr *trusted, size_t n_trusted)
{
	for (size_t i = 0; i < n_trusted; i++)
		if (cidr_contains(&trusted[i], a))
			return 1;
	return 0;
}

static int
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The entry [start, end) of a line: 1 if it is the client (out set), 0 if
 * it is a proxy (out set: the last one so far) or empty (skipped, as RFC
 * 9110 5.6.1 has empty list elements ignored), -1 if it ends the walk.
 */
static int
xff_entry(const char *start, const char *end, const struct cidr *trusted,
          size_t n_trusted, unsigned char out[RATELIMIT_KEY_LEN])
{
	unsigned char a[RATELIMIT_KEY_LEN];

	while (start < end && is_ows(*start))
		start++;
	while (end > start && is_ows(end[-1]))
		end--;
	if (start == end)
		return 0;
	if (ratelimit_addr_parse(start, (size_t)(end - start), a) != 0)
		return -1;
	memcpy(out, a, sizeof(a));
	return trusted_addr(a, trusted, n_trusted) ? 0 : 1;
}

void
ratelimit_client_key(const unsigned char peer[RATELIMIT_KEY_LEN],
                     const char *const *xff, size_t n_xff,
                     const struct cidr *trusted, size_t n_trusted,
                     unsigned char out[RATELIMIT_KEY_LEN])
{
	unsigned char key[RATELIMIT_KEY_LEN];

	memcpy(key, peer, sizeof(key));
	if (!trusted_addr(peer, trusted, n_trusted))
		goto out;
	for (size_t i = n_xff; i-- > 0;) {
		const char *line = xff[i];
		const char *end = line + strlen(line), *p = end;

		/* Each entry, from the line's last: [p, end) after the comma
		 * before it, or from the line's start. */
		for (;;) {
			int r;

			while (p > line && p[-1] != ',')
				p--;
			r = xff_entry(p, end, trusted, n_trusted, key);
			if (r != 0)
				goto out; /* the client, or the walk's end */
			if (p == line)
				break;
			end = --p; /* before the comma */
		}
	}
out:
	memcpy(out, key, sizeof(key));
}

void
ratelimit_key_prefix(unsigned char key[RATELIMIT_KEY_LEN])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
	                                         0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(key, mapped, sizeof(mapped)) != 0)
		memset(key + 8, 0, RATELIMIT_KEY_LEN - 8);
}
