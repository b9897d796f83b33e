/* SPDX-License-Identifier: MIT */
/*
 * middleware.c -- the before-handler chain: its table, and microd's own
 * links, the per-client rate limit and the bearer-token check. A service's
 * own link (an API-key check, a tenant header) is a function of the
 * middleware_fn type and a row in chain[] below.
 */
#include "middleware.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "healthz.h"
#include "log.h"
#include "ratelimit.h"
#include "reply.h"
#include "router.h"

/* X-Forwarded-For lines read from one request, at most. */
#define XFF_LINES_MAX 16

/* The policy's name in RateLimit-Policy, RateLimit and problem details. */
#define POLICY "per-client"
#define QUOTA_TYPE                                                             \
	"https://iana.org/assignments/http-problem-types#quota-exceeded"

/*
 * RFC 6750 3.1, by verdict: no credentials get a bare challenge; a token
 * that is not one of the file's, invalid_token; a malformed Authorization,
 * 400 invalid_request.
 */
static const struct token_refusal {
	unsigned int status;
	const char *challenge; /* WWW-Authenticate */
	const char *detail;
} token_refusals[] = {
    [AUTH_NONE] = {401, "Bearer realm=\"microd\"",
                   "a bearer token is required"},
    [AUTH_INVALID] = {401, "Bearer realm=\"microd\", error=\"invalid_token\"",
                      "the bearer token is not valid"},
    [AUTH_MALFORMED] = {400,
                        "Bearer realm=\"microd\", error=\"invalid_request\"",
                        "Authorization: not \"Bearer\" and one token "
                        "(letters, digits, -._~+/ then any '=')"},
};

#define N_VERDICTS (sizeof(token_refusals) / sizeof(token_refusals[0]))

struct middleware {
	struct auth *auth;    /* NULL: no --auth-token-file */
	int auth_metrics;     /* /metrics needs a token too */
	struct ratelimit *rl; /* NULL: no --rate-limit */
	double rate;
	unsigned int burst, window_s;
	const struct cidr *trusted;
	size_t n_trusted;
	atomic_ullong limited;
	atomic_ullong refused[N_VERDICTS]; /* by verdict; AUTH_OK unused */
};

/* The last XFF_LINES_MAX lines, in a ring: a proxy appends its line at
 * the end, so the lines on the right are the ones to keep. */
struct xff_lines {
	const char *ring[XFF_LINES_MAX];
	size_t seen;
};

static void
collect_xff(void *arg, const char *value)
{
	struct xff_lines *x = arg;

	x->ring[x->seen++ % XFF_LINES_MAX] = value != NULL ? value : "";
}

/*
 * The kept lines, in order, into at: the count. When lines were left out
 * on the left and every kept one is a proxy's, the walk ends at the
 * leftmost of them, never at a line the client wrote.
 */
static size_t
xff_in_order(const struct xff_lines *x, const char **at)
{
	size_t n = 0, kept = x->seen < XFF_LINES_MAX ? x->seen : XFF_LINES_MAX;

	for (size_t i = x->seen - kept; i < x->seen; i++)
		at[n++] = x->ring[i % XFF_LINES_MAX];
	return n;
}

/* A rate as people write it: 0.5, 100, 1000000 (not 1e+06). */
static void
format_rate(double rate, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "%.3f", rate);

	while (n > 0 && n < len && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && n < len && buf[n - 1] == '.')
		buf[--n] = '\0';
}

/*
 * Over its limit a client gets 429 problem details of the registered
 * quota-exceeded type, with Retry-After; every answer on a limited route
 * carries RateLimit-Policy and RateLimit.
 */
static int
limit_rate(struct middleware *mw, const struct request *req, unsigned int flags,
           struct reply *rep, struct middleware_fields *out)
{
	unsigned char peer[16] = {0}, key[16];
	const char *p = request_peer(req), *lines[XFF_LINES_MAX];
	struct xff_lines xff = {.seen = 0};
	struct ratelimit_verdict v;
	size_t n = 0;
	char rate[32];

	(void)flags;
	if (mw->rl == NULL)
		return 0;
	/* A peer with no address (a unix socket's) counts as "::". */
	(void)ratelimit_addr_parse(p, strlen(p), peer);
	if (mw->n_trusted > 0) {
		request_header_each(req, "X-Forwarded-For", collect_xff, &xff);
		n = xff_in_order(&xff, lines);
	}
	ratelimit_client_key(peer, lines, n, mw->trusted, mw->n_trusted, key);
	ratelimit_key_prefix(key);
	ratelimit_take(mw->rl, key, now_ns(), &v);
	snprintf(out->ratelimit_policy, sizeof(out->ratelimit_policy),
	         "\"" POLICY "\";q=%u;w=%u", mw->burst, mw->window_s);
	/* Refused, t is when Retry-After points: when one more may pass. */
	snprintf(out->ratelimit, sizeof(out->ratelimit),
	         "\"" POLICY "\";r=%u;t=%lld", v.remaining,
	         v.allowed ? v.reset_s : v.retry_after_s);
	if (v.allowed)
		return 0;
	atomic_fetch_add(&mw->limited, 1);
	format_rate(mw->rate, rate, sizeof(rate));
	reply_error(rep, 429,
	            "rate limit: %u requests at once and %s a second from "
	            "one client; retry in %lld s",
	            mw->burst, rate, v.retry_after_s);
	if (rep->body != NULL) {
		json_object_set_new(rep->body, "type", json_string(QUOTA_TYPE));
		json_object_set_new(rep->body, "title",
		                    json_string("Request cannot be satisfied "
		                                "as assigned quota has been "
		                                "exceeded"));
		json_object_set_new(rep->body, "violated-policies",
		                    json_pack("[s]", POLICY));
	}
	rep->retry_after = (unsigned int)v.retry_after_s;
	return 1;
}

static void
count_line(void *arg, const char *value)
{
	(void)value;
	(*(unsigned int *)arg)++;
}

/* token_refusals[] says how a refused request is answered. The token is
 * never logged or echoed. */
static int
check_token(struct middleware *mw, const struct request *req,
            unsigned int flags, struct reply *rep,
            struct middleware_fields *out)
{
	const struct token_refusal *r;
	unsigned int lines = 0;
	enum auth_verdict v;

	if (mw->auth == NULL || ((flags & ROUTE_METRICS) && !mw->auth_metrics))
		return 0;
	/* Authorization is no list: two are a malformed request (RFC 6750
	 * 3.1), whichever a proxy before microd would have read. */
	request_header_each(req, "Authorization", count_line, &lines);
	v = lines > 1
	        ? AUTH_MALFORMED
	        : auth_check(mw->auth, request_header(req, "Authorization"));
	if (v == AUTH_OK)
		return 0;
	if ((size_t)v >= N_VERDICTS || token_refusals[v].challenge == NULL)
		v = AUTH_MALFORMED; /* a verdict with no row: refused as bad */
	r = &token_refusals[v];
	atomic_fetch_add(&mw->refused[v], 1);
	snprintf(out->www_authenticate, sizeof(out->www_authenticate), "%s",
	         r->challenge);
	reply_error(rep, r->status, "%s",
	            lines > 1 ? "Authorization: more than one" : r->detail);
	return 1;
}

/* Settings of the chain that do nothing as given: one warning each. */
void
middleware_warn(const struct config *cfg)
{
	if (cfg->auth_metrics && cfg->auth_token_file == NULL)
		log_warn("--auth-metrics without --auth-token-file: /metrics "
		         "is open");
	if (cfg->rate_milli == 0 && (cfg->rate_burst > 0 || cfg->n_trusted > 0))
		log_warn("--rate-burst or --trusted-proxy without "
		         "--rate-limit: nothing is rate limited");
	for (size_t i = 0; i < cfg->n_trusted; i++) {
		const struct cidr *c = &cfg->trusted[i];
		/* IPv4 blocks are kept IPv4-mapped: 0.0.0.0/0 is ::ffff:0:0/96
		 */
		int v4_all = c->prefix == 96 && c->addr[10] == 0xff &&
		             c->addr[11] == 0xff;

		if (c->prefix == 0 || v4_all)
			log_warn("--trusted-proxy %s/0 trusts every peer: any "
			         "client picks its own key with "
			         "X-Forwarded-For",
			         c->prefix == 0 ? "::" : "0.0.0.0");
	}
}

/*
 * The chain, in order. Probes carry no credentials and must answer however
 * hard a client pushes, so probe routes skip both links. The rate limit
 * comes first: a client guessing tokens is limited like any other.
 */
static const struct middleware_link chain[] = {
    {"rate-limit", limit_rate, ROUTE_PROBE | ROUTE_NO_LIMIT},
    {"auth", check_token, ROUTE_PROBE | ROUTE_NO_AUTH},
};

int
middleware_skips(unsigned int flags)
{
	/* A named probe is one only for a check's name: asked per request. */
	if (flags & ROUTE_PROBE_NAMED)
		return 0;
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
		if ((flags & chain[i].exempt) == 0)
			return 0;
	return 1;
}

int
middleware_run(struct middleware *mw, const struct request *req,
               unsigned int flags, struct reply *rep,
               struct middleware_fields *out)
{
	/* A name that is no check's is no probe: it goes through as a path
	 * no route serves, so no name slips past the token or the limit. */
	if ((flags & ROUTE_PROBE_NAMED) && !healthz_names_check(req))
		flags = 0;
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
		if ((flags & chain[i].exempt) == 0 &&
		    chain[i].fn(mw, req, flags, rep, out) != 0)
			return 1;
	return 0;
}

struct middleware *
middleware_open(const struct config *cfg, char *err, size_t len)
{
	struct middleware *mw = calloc(1, sizeof(*mw));
	unsigned char seed[RATELIMIT_SEED_LEN];

	if (mw == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	mw->auth_metrics = cfg->auth_metrics;
	mw->trusted = cfg->trusted;
	mw->n_trusted = cfg->n_trusted;
	if (cfg->auth_token_file != NULL) {
		char why[512];

		mw->auth = auth_open(cfg->auth_token_file, why, sizeof(why));
		if (mw->auth == NULL) {
			snprintf(err, len, "--auth-token-file: %s", why);
			goto fail;
		}
	}
	if (cfg->rate_milli > 0) {
		mw->rate = (double)cfg->rate_milli / 1000.0;
		mw->burst = cfg->rate_burst;
		mw->window_s = (unsigned int)ceil((double)mw->burst / mw->rate);
		if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
			snprintf(err, len, "--rate-limit: no random seed");
			goto fail;
		}
		mw->rl =
		    ratelimit_new(mw->rate, mw->burst, cfg->rate_clients, seed);
		if (mw->rl == NULL) {
			snprintf(err, len,
			         "--rate-limit: cannot make a table "
			         "of that size");
			goto fail;
		}
	}
	return mw;
fail:
	middleware_close(mw);
	return NULL;
}

void
middleware_describe(struct middleware *mw)
{
	char rate[32];

	if (mw->rl != NULL) {
		format_rate(mw->rate, rate, sizeof(rate));
		log_info("rate limit: %s requests a second and %u at once per "
		         "client, %zu clients remembered, %zu trusted proxy "
		         "blocks",
		         rate, mw->burst, ratelimit_slots(mw->rl),
		         mw->n_trusted);
	}
	if (mw->auth != NULL)
		log_info(
		    "bearer tokens: %zu, on every request but the probes%s",
		    auth_count(mw->auth),
		    mw->auth_metrics ? "" : " and /metrics");
}

int
middleware_reload(struct middleware *mw)
{
	return mw->auth != NULL ? auth_reload(mw->auth) : 0;
}

int
middleware_has_auth(const struct middleware *mw)
{
	return mw != NULL && mw->auth != NULL;
}

void
middleware_render_metrics(struct middleware *mw, FILE *f)
{
	if (mw->rl != NULL) {
		unsigned long long all = 0, in_debt = 0;

		ratelimit_stats(mw->rl, &all, &in_debt);
		fprintf(
		    f,
		    "# HELP microd_rate_limited_total Requests answered 429 "
		    "by the per-client rate limit.\n"
		    "# TYPE microd_rate_limited_total counter\n"
		    "microd_rate_limited_total %llu\n"
		    "# HELP microd_rate_limit_evictions_total Clients the "
		    "full table forgot to make room: idle had a full "
		    "bucket, limited was still over its rate.\n"
		    "# TYPE microd_rate_limit_evictions_total counter\n"
		    "microd_rate_limit_evictions_total{state=\"idle\"} "
		    "%llu\n"
		    "microd_rate_limit_evictions_total{state=\"limited\"} "
		    "%llu\n",
		    atomic_load(&mw->limited), all - in_debt, in_debt);
	}
	if (mw->auth != NULL) {
		unsigned long long ok = 0, failed = 0;

		auth_reloads(mw->auth, &ok, &failed);
		fprintf(f,
		        "# HELP microd_auth_refused_total Requests refused by "
		        "the bearer-token check, by RFC 6750 error.\n"
		        "# TYPE microd_auth_refused_total counter\n"
		        "microd_auth_refused_total{error=\"none\"} %llu\n"
		        "microd_auth_refused_total{error=\"invalid_token\"} "
		        "%llu\n"
		        "microd_auth_refused_total{error=\"invalid_request\"} "
		        "%llu\n"
		        "# HELP microd_auth_tokens Bearer tokens in use.\n"
		        "# TYPE microd_auth_tokens gauge\n"
		        "microd_auth_tokens %zu\n"
		        "# HELP microd_auth_reloads_total Reloads of the token "
		        "file: ok replaced the tokens, failed kept the old "
		        "ones.\n"
		        "# TYPE microd_auth_reloads_total counter\n"
		        "microd_auth_reloads_total{result=\"ok\"} %llu\n"
		        "microd_auth_reloads_total{result=\"failed\"} %llu\n",
		        atomic_load(&mw->refused[AUTH_NONE]),
		        atomic_load(&mw->refused[AUTH_INVALID]),
		        atomic_load(&mw->refused[AUTH_MALFORMED]),
		        auth_count(mw->auth), ok, failed);
	}
}

void
middleware_close(struct middleware *mw)
{
	if (mw == NULL)
		return;
	auth_close(mw->auth);
	ratelimit_free(mw->rl);
	free(mw);
}
