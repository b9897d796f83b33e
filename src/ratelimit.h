/* SPDX-License-Identifier: MIT */
/*
 * ratelimit.h -- per-client request rate limits (GCRA) in a table of fixed
 * size, and the client's key from the peer address and X-Forwarded-For; no
 * libmicrohttpd, no I/O, no clock: the caller passes the time in
 */
#ifndef MICROD_RATELIMIT_H
#define MICROD_RATELIMIT_H

#include <stddef.h>

/*
 * The ranges ratelimit_new() accepts. With them the emission interval
 * T = 1e9 / rate ns lies in [1000 ns, 1e12 ns] and burst * T is at most
 * 1e18 ns, so no arithmetic on a bucket can overflow a long long.
 */
#define RATELIMIT_RATE_MIN 0.001 /* requests per second */
#define RATELIMIT_RATE_MAX 1e6
#define RATELIMIT_BURST_MAX 1000000u
#define RATELIMIT_SET_SIZE 8 /* slots per set; slots round up to it */
#define RATELIMIT_SLOTS_MAX ((size_t)1 << 24) /* about 40 bytes a slot */

/* The length of a client key: an IPv6 address, IPv4 as ::ffff:a.b.c.d. */
#define RATELIMIT_KEY_LEN 16

/* The length of the hash seed ratelimit_new() takes. */
#define RATELIMIT_SEED_LEN 16

struct ratelimit;

/* The answer to one request. */
struct ratelimit_verdict {
	int allowed;            /* 1: go ahead; 0: refuse it */
	unsigned int remaining; /* requests still allowed now, after this one */
	long long reset_s; /* seconds, rounded up, until the bucket is full */
	long long retry_after_s; /* refused: seconds, rounded up (>= 1), until
	                          * one request is allowed; allowed: 0 */
};

/*
 * A limit of rate requests per second with bursts of up to burst at once,
 * for each key, kept in a table of slots entries (rounded up to a multiple
 * of RATELIMIT_SET_SIZE) allocated here, once: memory is bounded whatever
 * the number of clients. Keys go to a set of RATELIMIT_SET_SIZE slots by
 * SipHash-2-4 keyed with seed (pass RATELIMIT_SEED_LEN bytes from
 * getrandom(), so that clients cannot aim their addresses at one set).
 * Returns NULL with errno EINVAL when rate is not within
 * [RATELIMIT_RATE_MIN, RATELIMIT_RATE_MAX] (NaN is not), burst not within
 * [1, RATELIMIT_BURST_MAX] or slots not within [1, RATELIMIT_SLOTS_MAX];
 * NULL with errno set when memory or a mutex cannot be had.
 */
struct ratelimit *ratelimit_new(double rate, unsigned int burst, size_t slots,
                                const unsigned char seed[RATELIMIT_SEED_LEN]);
void ratelimit_free(struct ratelimit *rl); /* NULL-safe */

/*
 * Counts one request of key at now_ns (a monotonic clock's nanoseconds;
 * below 0 counts as 0, above 2^62 as 2^62) and returns out->allowed; out
 * may be NULL. GCRA, with T = 1e9 / rate ns (rounded to the nearest ns)
 * and a key's state its theoretical arrival time TAT: tat = max(TAT, now),
 * and the request is allowed iff tat + T - now <= burst * T, when TAT
 * becomes tat + T; a refused request changes nothing. A key not in the
 * table starts with a full bucket in its set's first free slot; if the set
 * is full it evicts, first, an entry whose TAT <= now (its bucket is full:
 * nothing is lost), else the one with the smallest TAT (the least in
 * debt), which then starts over with a full bucket. Safe from any number
 * of threads: each set has its own mutex.
 */
int ratelimit_take(struct ratelimit *rl,
                   const unsigned char key[RATELIMIT_KEY_LEN], long long now_ns,
                   struct ratelimit_verdict *out);

/*
 * Evictions since ratelimit_new(): all of them, and those of them that
 * lost a bucket that was not full (its TAT was after now). Either pointer
 * may be NULL.
 */
void ratelimit_stats(struct ratelimit *rl, unsigned long long *evicted_total,
                     unsigned long long *evicted_in_debt);

/* The number of slots, as rounded up by ratelimit_new(). */
size_t ratelimit_slots(const struct ratelimit *rl);

/*
 * The set key goes to, 0 to ratelimit_slots() / RATELIMIT_SET_SIZE - 1:
 * keys in different sets never evict each other. For tests and diagnosis.
 */
size_t ratelimit_set_of(const struct ratelimit *rl,
                        const unsigned char key[RATELIMIT_KEY_LEN]);

/* An address block; IPv4 is kept IPv4-mapped, its prefix length + 96. */
struct cidr {
	unsigned char addr[RATELIMIT_KEY_LEN]; /* no bit set past prefix */
	unsigned int prefix;                   /* 0 to 128 */
};

/*
 * Parses "address/prefix" or a bare address (a single host: /32 for IPv4,
 * /128 for IPv6). The address is dotted-quad IPv4 or IPv6 text, without
 * brackets; the prefix is 1 to 3 decimal digits and nothing else (no sign,
 * no space), at most 32 for IPv4 and 128 for IPv6, and the address has no
 * bit set past it ("10.0.0.1/8" is refused: write "10.0.0.0/8"). Returns 0
 * with *out filled, or -1 with *why (if why is not NULL) a static string
 * naming the rule broken and *out zeroed. NULL counts as empty.
 */
int ratelimit_parse_cidr(const char *s, struct cidr *out, const char **why);

/*
 * Parses the n bytes at s (no NUL needed) as one address: dotted-quad IPv4
 * (stored as ::ffff:a.b.c.d), IPv6 text, or IPv6 text in brackets
 * ("[::1]"). Nothing else: no port, no zone ("%eth0"), no space, no NUL,
 * not empty, at most 63 bytes. 0 with out filled, or -1.
 */
int ratelimit_addr_parse(const char *s, size_t n,
                         unsigned char out[RATELIMIT_KEY_LEN]);

/*
 * The key to rate-limit a request by. peer is the connection's address;
 * xff holds the value of every X-Forwarded-For line of the request, in the
 * order received (xff may be NULL when n_xff is 0, its lines may not);
 * trusted lists the proxies' address blocks.
 *  - If peer is in no trusted block, the key is peer: X-Forwarded-For is
 *    ignored, since anyone can send one.
 *  - Else the lines are read as one comma-separated list, the first line's
 *    entries first, each entry stripped of the spaces and tabs around it,
 *    and walked from its rightmost entry (the last line's last) leftwards:
 *    - an empty entry (",,", a trailing comma, an empty line) is skipped,
 *      as RFC 9110 5.6.1 has empty list elements ignored;
 *    - an address (as ratelimit_addr_parse() reads them) in a trusted
 *      block is a proxy: it is skipped, and remembered;
 *    - the first address in no trusted block is the client: the key;
 *    - an entry that is no address ("unknown", garbage) ends the walk: the
 *      key is the last proxy remembered, the entry to its right, or peer
 *      when it was the rightmost.
 *  - If every entry is a trusted address, the key is the leftmost one; if
 *    there are no entries (n_xff 0), the key is peer.
 */
void ratelimit_client_key(const unsigned char peer[RATELIMIT_KEY_LEN],
                          const char *const *xff, size_t n_xff,
                          const struct cidr *trusted, size_t n_trusted,
                          unsigned char out[RATELIMIT_KEY_LEN]);

/*
 * The bucket a client address counts in: an IPv4 address (IPv4-mapped) as
 * it is, an IPv6 address cut to its /64, since one host is given a whole
 * /64 and could take a new address for each request. In place.
 */
void ratelimit_key_prefix(unsigned char key[RATELIMIT_KEY_LEN]);

#endif
