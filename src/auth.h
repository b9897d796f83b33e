/* SPDX-License-Identifier: MIT */
/*
 * auth.h -- bearer tokens: the token file, read at start and again on
 * SIGHUP, and the check of a request's Authorization field against it
 */
#ifndef MICROD_AUTH_H
#define MICROD_AUTH_H

#include <stddef.h>

/* Most tokens a file may hold, and the shortest and longest token. */
#define AUTH_TOKENS_MAX 1024
#define AUTH_TOKEN_MIN 16
#define AUTH_TOKEN_MAX 512
/* Largest token file read. */
#define AUTH_FILE_MAX ((size_t)1024 * 1024)

enum auth_verdict {
	AUTH_OK,        /* a Bearer token in the file */
	AUTH_NONE,      /* no Authorization, or another scheme (Basic) */
	AUTH_INVALID,   /* a well-formed Bearer token that is not in it */
	AUTH_MALFORMED, /* "Bearer" without a token, or bad characters */
};

/*
 * The token of an Authorization field value: the scheme "Bearer" (any
 * case), one or more spaces, then a b64token (RFC 6750 2.1: letters,
 * digits, "-._~+/", then any "="s) of at most AUTH_TOKEN_MAX bytes, then
 * nothing but spaces and tabs. AUTH_OK with *tok and *len set; AUTH_NONE for
 * NULL,
 * "" or another scheme; AUTH_MALFORMED for the rest.
 */
enum auth_verdict auth_bearer(const char *field, const char **tok, size_t *len);

/*
 * The tokens of a token file's len bytes of text: one a line, with spaces,
 * tabs and a CR around it dropped; empty lines and lines starting with '#'
 * are skipped. Each token follows auth_bearer's b64token rule and has
 * AUTH_TOKEN_MIN bytes at least; a NUL byte is in no token. Writes the
 * SHA-256 digest of each (32 bytes) into digests, n of them (0 for none);
 * -1 with the first bad line's number in *line (the token itself is never
 * shown), or *line 0 when there are more than max.
 */
int auth_parse(const char *text, size_t len, unsigned char (*digests)[32],
               size_t max, size_t *n, size_t *line);

struct auth;

/* Reads the file. NULL with one line in err naming the file (and line);
 * a file with no token is refused here. */
struct auth *auth_open(const char *path, char *err, size_t len);

/*
 * Reads the file again (SIGHUP). A file that fails to read or parse keeps
 * the tokens there were, and says why in the log; one with no token (only
 * comments, or empty) is taken: every token is revoked. 0 when read.
 */
int auth_reload(struct auth *a);

/*
 * Checks an Authorization field value: SHA-256 of the token compared with
 * every digest of the file, in time that does not depend on where or
 * whether they differ. Safe from any thread, during a reload too.
 */
enum auth_verdict auth_check(struct auth *a, const char *field);

/* How many tokens the file held when last read; reloads by result. */
size_t auth_count(struct auth *a);
void auth_reloads(struct auth *a, unsigned long long *ok,
                  unsigned long long *failed);

/* NULL-safe; the digests are wiped. */
void auth_close(struct auth *a);

#endif
