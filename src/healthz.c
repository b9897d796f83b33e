/* SPDX-License-Identifier: MIT */
/*
 * healthz.c -- the probe endpoints: /livez and /readyz, one check of them,
 * and /health and /ready as the two groups' old faces; they only read the
 * checks' latest results
 */
#include "healthz.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "checks.h"
#include "reply.h"
#include "runtime.h"
#include "state.h"
#include "utf8.h"

/* What ?exclude= named, for one request. */
struct excluded {
	const char *names[CHECKS_MAX]; /* each once */
	size_t n;
	int overflow;  /* more different names than a table can hold */
	json_t *notes; /* "exclude=x: no such check", for the verbose body */
};

static int
is_excluded(const struct excluded *e, const char *name)
{
	for (size_t i = 0; i < e->n; i++)
		if (strcmp(e->names[i], name) == 0)
			return 1;
	return 0;
}

static void
take_exclude(void *arg, const char *value)
{
	struct excluded *e = arg;

	if (value == NULL || is_excluded(e, value))
		return;
	if (e->n == CHECKS_MAX)
		e->overflow = 1;
	else
		e->names[e->n++] = value;
}

static void
mark(void *arg, const char *value)
{
	(void)value;
	*(int *)arg = 1;
}

/* Whether the query names flag, with or without a value (?verbose). */
static int
has_flag(const struct request *req, const char *flag)
{
	int seen = 0;

	request_query_each(req, flag, mark, &seen);
	return seen;
}

/* ISO 8601 UTC with milliseconds, as the log writes it. */
static void
iso_time(long long ms, char *buf, size_t len)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03lldZ", ms % 1000);
}

/* See health_passes. */
static int
counts_as_pass(const struct check_report *r, unsigned int group)
{
	return health_passes(r->st.status, group == CHECK_LIVE);
}

static json_t *
check_json(const struct check_report *r, unsigned int group, int details)
{
	char when[40];
	json_t *o = json_pack("{s:s}", "status",
	                      counts_as_pass(r, group) ? "pass" : "fail");

	if (o == NULL)
		return NULL;
	if (r->st.ran_at_ms > 0) {
		iso_time(r->st.ran_at_ms, when, sizeof(when));
		json_object_set_new(o, "time", json_string(when));
		json_object_set_new(
		    o, "duration_us",
		    json_integer((json_int_t)(r->st.duration_ns / 1000)));
	} else {
		json_object_set_new(o, "time", json_null());
	}
	if (details && r->st.reason[0] != '\0')
		json_object_set_new(o, "output", json_string(r->st.reason));
	return o;
}

/* The checks main set up; NULL in a harness without them (no checks). */
static struct checks *
checks_of(const struct request *req)
{
	return req->runtime != NULL ? req->runtime->checks : NULL;
}

static size_t
reports(const struct request *req, unsigned int group, struct check_report *out)
{
	return checks_report(checks_of(req), group, out, CHECKS_MAX);
}

static int
details_allowed(const struct request *req)
{
	return req->runtime != NULL && req->runtime->health_details;
}

/* Whether the group passes, minus the excluded; no copies, no JSON. */
static int
group_passes(const struct request *req, unsigned int group,
             const struct excluded *e)
{
	return checks_pass(checks_of(req), group, e->names, e->n);
}

/*
 * The group's status, minus ?exclude= (repeatable); with ?verbose every
 * check's status, time and duration, and notes on names excluded that are
 * not there. 200 or 503; returns whether it passed.
 */
static int
group_reply(const struct request *req, unsigned int group, struct reply *rep)
{
	struct check_report r[CHECKS_MAX];
	size_t n;
	struct excluded e = {.n = 0};
	int pass, verbose = has_flag(req, "verbose");
	json_t *body, *checks = NULL;

	request_query_each(req, "exclude", take_exclude, &e);
	if (e.overflow) { /* a name left out could be the one that fails */
		reply_error(rep, 400, "?exclude= names more than %d checks",
		            CHECKS_MAX);
		return 0;
	}
	pass = group_passes(req, group, &e);
	body = json_pack("{s:s}", "status", pass ? "pass" : "fail");
	if (verbose && body != NULL) {
		n = reports(req, group, r);
		checks = json_object();
		for (size_t i = 0; i < n; i++) {
			json_t *c =
			    check_json(&r[i], group, details_allowed(req));

			if (c != NULL && is_excluded(&e, r[i].name))
				json_object_set_new(c, "excluded", json_true());
			json_object_set_new(checks, r[i].name, c);
		}
		json_object_set_new(body, "checks", checks);
		for (size_t i = 0; i < e.n; i++) {
			int known = 0;
			char note[HEALTH_NAME_MAX + 64],
			    clean[3 * sizeof(note)];

			for (size_t j = 0; j < n; j++)
				known |= strcmp(r[j].name, e.names[i]) == 0;
			if (known)
				continue;
			if (e.notes == NULL)
				e.notes = json_array();
			snprintf(note, sizeof(note),
			         "exclude=%.*s: no such check, ignored",
			         HEALTH_NAME_MAX, e.names[i]);
			/* The name is the client's bytes, and may be cut
			 * inside a character: JSON wants UTF-8. */
			utf8_sanitize(clean, sizeof(clean), note);
			json_array_append_new(e.notes, json_string(clean));
		}
		if (e.notes != NULL)
			json_object_set_new(body, "notes", e.notes);
	}
	reply_json(rep, pass ? 200 : 503, body);
	return pass;
}

void
handle_livez(const struct request *req, struct reply *rep)
{
	group_reply(req, CHECK_LIVE, rep);
}

void
handle_readyz(const struct request *req, struct reply *rep)
{
	group_reply(req, CHECK_READY, rep);
}

/* /livez/NAME, /readyz/NAME: one check of the group; 404 for no such. */
static void
one_reply(const struct request *req, unsigned int group, struct reply *rep)
{
	struct check_report r[CHECKS_MAX];
	size_t n = reports(req, group, r);
	const char *name = request_param(req, "name");
	int verbose = has_flag(req, "verbose");

	for (size_t i = 0; i < n; i++) {
		int pass;

		if (strcmp(r[i].name, name) != 0)
			continue;
		pass = counts_as_pass(&r[i], group);
		reply_json(
		    rep, pass ? 200 : 503,
		    verbose
		        ? check_json(&r[i], group, details_allowed(req))
		        : json_pack("{s:s}", "status", pass ? "pass" : "fail"));
		return;
	}
	reply_error(rep, 404, "no check named %s in %s", name,
	            group == CHECK_LIVE ? "liveness" : "readiness");
}

int
healthz_names_check(const struct request *req)
{
	struct check_report r[CHECKS_MAX];
	const char *name = request_param(req, "name");
	/* The route's own group: its path's first segment, as decoded. */
	unsigned int group =
	    strncmp(req->path, "/livez/", 7) == 0 ? CHECK_LIVE : CHECK_READY;
	size_t n = reports(req, group, r);

	for (size_t i = 0; name != NULL && i < n; i++)
		if (strcmp(r[i].name, name) == 0)
			return 1;
	return 0;
}

void
handle_livez_one(const struct request *req, struct reply *rep)
{
	one_reply(req, CHECK_LIVE, rep);
}

void
handle_readyz_one(const struct request *req, struct reply *rep)
{
	one_reply(req, CHECK_READY, rep);
}

/*
 * 200 from any worker thread that can answer. This is the request the pool
 * check itself sends to every thread (and the watchdog's), so it must not
 * depend on that check's result: /livez is the whole liveness group.
 */
void
handle_health(const struct request *req, struct reply *rep)
{
	(void)req;
	reply_json(rep, 200, json_pack("{s:s}", "status", "ok"));
}

void
handle_ready(const struct request *req, struct reply *rep)
{
	struct excluded none = {.n = 0};
	int pass = group_passes(req, CHECK_READY, &none);

	/* The readiness group, answered as /ready always was. */
	if (state_get() == STATE_STARTING)
		reply_json(rep, 503, json_pack("{s:s}", "status", "starting"));
	else if (state_get() != STATE_READY)
		reply_json(rep, 503, json_pack("{s:s}", "status", "draining"));
	else if (pass)
		reply_json(rep, 200, json_pack("{s:s}", "status", "ready"));
	else
		reply_json(rep, 503, json_pack("{s:s}", "status", "fail"));
}
