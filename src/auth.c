/* SPDX-License-Identifier: MIT */
/*
 * auth.c -- bearer tokens: the token file, read at start and again on
 * SIGHUP, kept as SHA-256 digests only, and the constant-time check of a
 * request's Authorization field against them
 */
#include "auth.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"
#include "log.h"

#define DIGEST_LEN 32

struct auth {
	char *path;
	/* Readers: every authorised request; the writer: a reload. */
	pthread_rwlock_t lock;
	unsigned char (*digests)[DIGEST_LEN];
	size_t n;
	atomic_ullong reloads_ok, reloads_failed;
};

static int
is_b64token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("-._~+/", c) != NULL);
}

/* Whether s[0..n) is a b64token: 1*( tchar ) *"=". */
static int
is_b64token(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] != '\0' && is_b64token_char(s[i]))
		i++;
	if (i == 0)
		return 0;
	while (i < n && s[i] == '=')
		i++;
	return i == n && n <= AUTH_TOKEN_MAX;
}

enum auth_verdict
auth_bearer(const char *field, const char **tok, size_t *len)
{
	const char *p, *end;

	if (field == NULL || *field == '\0')
		return AUTH_NONE;
	if (strncasecmp(field, "Bearer", 6) != 0 ||
	    (field[6] != ' ' && field[6] != '\0'))
		return AUTH_NONE; /* another scheme: no credentials of ours */
	p = field + 6;
	while (*p == ' ')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--; /* libmicrohttpd keeps what ends a field's value */
	if (!is_b64token(p, (size_t)(end - p)))
		return AUTH_MALFORMED;
	*tok = p;
	*len = (size_t)(end - p);
	return AUTH_OK;
}

static int
digest(const char *tok, size_t len, unsigned char out[DIGEST_LEN])
{
	return gnutls_hash_fast(GNUTLS_DIG_SHA256, tok, len, out) == 0 ? 0 : -1;
}

int
auth_parse(const char *text, size_t len, unsigned char (*digests)[32],
           size_t max, size_t *n, size_t *line)
{
	const char *at = text, *stop = text + len;
	size_t lineno = 0;

	*n = 0;
	*line = 0;
	while (at < stop) {
		const char *eol = memchr(at, '\n', (size_t)(stop - at));
		const char *end = eol != NULL ? eol : stop;
		const char *p = at;

		lineno++;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		while (end > p &&
		       (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
			end--;
		if (p < end && *p != '#') {
			/* A NUL is a byte no token has: a UTF-16 file fails
			 * here, never as a short token. */
			if (!is_b64token(p, (size_t)(end - p)) ||
			    (size_t)(end - p) < AUTH_TOKEN_MIN) {
				*line = lineno;
				return -1;
			}
			if (*n == max ||
			    digest(p, (size_t)(end - p), digests[*n]) != 0)
				return -1;
			(*n)++;
		}
		if (eol == NULL)
			break;
		at = eol + 1;
	}
	return 0;
}

/* The file's digests, fresh: 0, or -1 with err. */
static int
load(const char *path, unsigned char (**out)[DIGEST_LEN], size_t *n, char *err,
     size_t len)
{
	unsigned char(*d)[DIGEST_LEN] = NULL;
	char *text = NULL;
	size_t line = 0, size = 0;
	int ret = -1;

	*out = NULL;
	if (file_read(path, AUTH_FILE_MAX, &text, &size, err, len) != 0)
		return -1;
	d = calloc(AUTH_TOKENS_MAX, sizeof(*d));
	if (d == NULL) {
		snprintf(err, len, "%s: out of memory", path);
		goto out;
	}
	if (auth_parse(text, size, d, AUTH_TOKENS_MAX, n, &line) != 0) {
		if (line > 0)
			snprintf(err, len,
			         "%s line %zu: not a bearer token (letters, "
			         "digits, -._~+/ then any '=', %d to %d bytes)",
			         path, line, AUTH_TOKEN_MIN, AUTH_TOKEN_MAX);
		else if (*n == AUTH_TOKENS_MAX)
			snprintf(err, len, "%s: more than %d tokens", path,
			         AUTH_TOKENS_MAX);
		else
			snprintf(err, len, "%s: cannot hash a token", path);
		gnutls_memset(d, 0, AUTH_TOKENS_MAX * sizeof(*d));
		goto out;
	}
	*out = d;
	d = NULL;
	ret = 0;
out:
	free(d);
	if (text != NULL) /* the tokens themselves */
		gnutls_memset(text, 0, size);
	free(text);
	return ret;
}

struct auth *
auth_open(const char *path, char *err, size_t len)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	if (pthread_rwlock_init(&a->lock, NULL) != 0) {
		snprintf(err, len, "cannot make a lock");
		free(a);
		return NULL;
	}
	a->path = strdup(path);
	if (a->path == NULL) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	if (load(path, &a->digests, &a->n, err, len) != 0)
		goto fail;
	if (a->n == 0) { /* at start, surely a mistake */
		snprintf(err, len, "%s: no token in it", path);
		goto fail;
	}
	return a;
fail:
	auth_close(a);
	return NULL;
}

int
auth_reload(struct auth *a)
{
	unsigned char(*d)[DIGEST_LEN] = NULL, (*old)[DIGEST_LEN];
	size_t n = 0;
	char err[512];

	if (load(a->path, &d, &n, err, sizeof(err)) != 0) {
		atomic_fetch_add(&a->reloads_failed, 1);
		log_error("bearer tokens not reloaded, the %zu there were are "
		          "kept: %s",
		          auth_count(a), err);
		return -1;
	}
	pthread_rwlock_wrlock(&a->lock);
	old = a->digests;
	a->digests = d;
	a->n = n;
	pthread_rwlock_unlock(&a->lock);
	gnutls_memset(old, 0, AUTH_TOKENS_MAX * sizeof(*old));
	free(old);
	atomic_fetch_add(&a->reloads_ok, 1);
	if (n == 0)
		log_warn("bearer tokens reloaded: none in %s, so every "
		         "request that needs one is refused",
		         a->path);
	else
		log_info("bearer tokens reloaded: %zu from %s", n, a->path);
	return 0;
}

enum auth_verdict
auth_check(struct auth *a, const char *field)
{
	unsigned char d[DIGEST_LEN];
	const char *tok = NULL;
	size_t len = 0;
	enum auth_verdict v = auth_bearer(field, &tok, &len);
	int match = 0;

	if (v != AUTH_OK)
		return v;
	if (digest(tok, len, d) != 0)
		return AUTH_INVALID;
	/* Every digest compared, each in constant time: neither where a
	 * token differs nor which one matched shows in the time taken. */
	pthread_rwlock_rdlock(&a->lock);
	for (size_t i = 0; i < a->n; i++)
		match |= gnutls_memcmp(d, a->digests[i], DIGEST_LEN) == 0;
	pthread_rwlock_unlock(&a->lock);
	gnutls_memset(d, 0, sizeof(d));
	return match ? AUTH_OK : AUTH_INVALID;
}

size_t
auth_count(struct auth *a)
{
	size_t n;

	pthread_rwlock_rdlock(&a->lock);
	n = a->n;
	pthread_rwlock_unlock(&a->lock);
	return n;
}

void
auth_reloads(struct auth *a, unsigned long long *ok, unsigned long long *failed)
{
	*ok = atomic_load(&a->reloads_ok);
	*failed = atomic_load(&a->reloads_failed);
}

void
auth_close(struct auth *a)
{
	if (a == NULL)
		return;
	if (a->digests != NULL)
		gnutls_memset(a->digests, 0,
		              AUTH_TOKENS_MAX * sizeof(*a->digests));
	free(a->digests);
	free(a->path);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}
