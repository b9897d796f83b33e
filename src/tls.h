/* SPDX-License-Identifier: MIT */
/* tls.h -- the HTTPS certificate and key: loaded, checked, swapped live */
#ifndef MICROD_TLS_H
#define MICROD_TLS_H

#include <gnutls/abstract.h>
#include <stddef.h>

struct tls;

enum tls_reload { TLS_UNCHANGED, TLS_RELOADED, TLS_FAILED };

/*
 * Reads the certificate chain and the key (PEM files) and checks them: both
 * parse, the key is the certificate's, and the certificate is valid now.
 * NULL with err set to one line naming the file at fault.
 */
struct tls *tls_open(const char *cert_path, const char *key_path, char *err,
                     size_t len);

/* 0 when GnuTLS takes the priority string, else -1 with err. */
int tls_check_priorities(const char *priorities, char *err, size_t len);

/*
 * Makes t the pair tls_retrieve hands out, and logs it: once, once the log
 * runs and before the HTTPS daemon starts. The one piece of process-wide
 * state here, since GnuTLS gives the callback no pointer of its own; what
 * it points to changes under t's lock.
 */
void tls_install(struct tls *t);

/* GnuTLS's certificate callback: a copy of the current pair for each
 * handshake, which GnuTLS frees (GNUTLS_CERT_RETR_DEINIT_ALL). */
gnutls_certificate_retrieve_function3 tls_retrieve;

/*
 * Loads the files again when they changed since last looked at (their
 * inode, size, mtime, then their bytes), or always with force (SIGHUP).
 * A pair that loads and checks replaces the current one; on any failure the
 * current pair stays, and why is logged. Main thread only.
 */
enum tls_reload tls_reload(struct tls *t, int force);

/* The current certificate's notAfter, seconds since the epoch. */
long long tls_expiry(const struct tls *t);

/* Reloads so far: that replaced the pair, that failed. */
void tls_reloads(const struct tls *t, unsigned long long *ok,
                 unsigned long long *failed);

void tls_close(struct tls *t);

#endif
