/* SPDX-License-Identifier: MIT */
/*
 * tls.c -- the HTTPS certificate and key: read from their files, checked
 * (they parse, match and are valid now), handed to every handshake, and
 * replaced while serving when the files change or on SIGHUP
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "log.h"

/* A PEM file larger than this is not a certificate chain or a key. */
#define TLS_FILE_MAX ((size_t)64 * 1024)
/* How many certificates a chain may hold. */
#define TLS_CHAIN_MAX 16
/* A certificate this close to its end is warned of. */
#define TLS_WARN_S (7LL * 24 * 3600)

/* One loaded pair, as DER: each handshake imports its own copy. */
struct pair {
	gnutls_datum_t certs[TLS_CHAIN_MAX];
	unsigned int n;
	gnutls_datum_t key;
	long long not_after;
	char *cert_pem, *key_pem; /* the files as read, to see a change */
};

/* What a file looked like when last read. */
struct seen {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime; /* ctime: a chmod or chown too */
	int ok;                       /* stat succeeded */
};

struct tls {
	char *cert_path, *key_path;
	pthread_mutex_t lock; /* guards cur: handshakes copy from it */
	struct pair *cur;
	struct seen cert_seen, key_seen;
	atomic_llong not_after;
	atomic_ullong reloads_ok, reloads_failed;
	long long warned_day; /* the day of the last expiry warning */
	/* The last reload failed, and why: tried again each look, since a
	 * pair may become valid, or readable, with nothing else changing. */
	int failing;
	char why[512];
};

/* Set once by tls_install, before the HTTPS daemon's threads start. */
static struct tls *installed;

static void
pair_free(struct pair *p)
{
	if (p == NULL)
		return;
	for (unsigned int i = 0; i < p->n; i++)
		gnutls_free(p->certs[i].data);
	if (p->key.data != NULL) /* no key bytes left in freed memory */
		gnutls_memset(p->key.data, 0, p->key.size);
	gnutls_free(p->key.data);
	if (p->key_pem != NULL)
		gnutls_memset(p->key_pem, 0, strlen(p->key_pem));
	free(p->cert_pem);
	free(p->key_pem);
	free(p);
}

static void
utc_time(long long t, char *buf, size_t len)
{
	time_t secs = (time_t)t;
	struct tm tm;

	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "%lld", t);
}

/*
 * Parses and checks the pair: the chain, the key, that they match (on
 * scratch credentials, as the callback path would take a mismatch without a
 * word and fail every handshake), and that the first certificate is valid
 * now. NULL with err.
 */
static struct pair *
pair_load(const char *cert_path, const char *key_path, char *err, size_t len)
{
	struct pair *p = calloc(1, sizeof(*p));
	gnutls_x509_crt_t crts[TLS_CHAIN_MAX];
	unsigned int n = TLS_CHAIN_MAX, have = 0;
	gnutls_x509_privkey_t key = NULL;
	gnutls_certificate_credentials_t scratch = NULL;
	gnutls_datum_t cert_d, key_d;
	long long now = (long long)time(NULL), not_before;
	char when[40];
	int ret;

	if (p == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	if (file_read(cert_path, TLS_FILE_MAX, &p->cert_pem, NULL, err, len) !=
	        0 ||
	    file_read(key_path, TLS_FILE_MAX, &p->key_pem, NULL, err, len) != 0)
		goto fail;
	cert_d = (gnutls_datum_t){(unsigned char *)p->cert_pem,
	                          (unsigned int)strlen(p->cert_pem)};
	key_d = (gnutls_datum_t){(unsigned char *)p->key_pem,
	                         (unsigned int)strlen(p->key_pem)};
	ret =
	    gnutls_x509_crt_list_import(crts, &n, &cert_d, GNUTLS_X509_FMT_PEM,
	                                GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
	if (ret == GNUTLS_E_SHORT_MEMORY_BUFFER) {
		snprintf(err, len, "%s: more than %d certificates", cert_path,
		         TLS_CHAIN_MAX);
		goto fail;
	}
	if (ret <= 0) {
		snprintf(err, len, "%s: no certificate: %s", cert_path,
		         ret == 0 ? "no PEM certificate in it"
		                  : gnutls_strerror(ret));
		goto fail;
	}
	have = (unsigned int)ret;
	if (gnutls_x509_privkey_init(&key) != 0 ||
	    (ret = gnutls_x509_privkey_import2(key, &key_d, GNUTLS_X509_FMT_PEM,
	                                       NULL, 0)) != 0) {
		snprintf(err, len, "%s: no private key: %s", key_path,
		         gnutls_strerror(ret));
		goto fail;
	}
	if (gnutls_certificate_allocate_credentials(&scratch) != 0) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	ret = gnutls_certificate_set_x509_key_mem2(
	    scratch, &cert_d, &key_d, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (ret < 0) {
		if (ret == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
			snprintf(err, len,
			         "the key in %s is not the key of the "
			         "certificate in %s",
			         key_path, cert_path);
		else
			snprintf(err, len, "%s with %s: %s", cert_path,
			         key_path, gnutls_strerror(ret));
		goto fail;
	}
	not_before = (long long)gnutls_x509_crt_get_activation_time(crts[0]);
	p->not_after = (long long)gnutls_x509_crt_get_expiration_time(crts[0]);
	if (not_before > now) {
		utc_time(not_before, when, sizeof(when));
		snprintf(err, len, "%s: the certificate is not valid before %s",
		         cert_path, when);
		goto fail;
	}
	if (p->not_after <= now) {
		utc_time(p->not_after, when, sizeof(when));
		snprintf(err, len, "%s: the certificate expired at %s",
		         cert_path, when);
		goto fail;
	}
	for (p->n = 0; p->n < have; p->n++)
		if (gnutls_x509_crt_export2(crts[p->n], GNUTLS_X509_FMT_DER,
		                            &p->certs[p->n]) != 0) {
			snprintf(err, len, "%s: cannot export certificate %u",
			         cert_path, p->n + 1);
			goto fail;
		}
	/* PKCS #8: gnutls_privkey_import_x509_raw takes no SEC1 EC key in
	 * DER, which gnutls_x509_privkey_export2 makes. */
	if (gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_DER, NULL,
	                                      GNUTLS_PKCS_PLAIN,
	                                      &p->key) != 0) {
		snprintf(err, len, "%s: cannot export the key", key_path);
		goto fail;
	}
	for (unsigned int i = 0; i < have; i++)
		gnutls_x509_crt_deinit(crts[i]);
	gnutls_x509_privkey_deinit(key);
	gnutls_certificate_free_credentials(scratch);
	return p;
fail:
	for (unsigned int i = 0; i < have; i++)
		gnutls_x509_crt_deinit(crts[i]);
	if (key != NULL)
		gnutls_x509_privkey_deinit(key);
	if (scratch != NULL)
		gnutls_certificate_free_credentials(scratch);
	pair_free(p);
	return NULL;
}

static struct seen
look(const char *path)
{
	struct stat st;
	struct seen s = {0};

	if (stat(path, &st) == 0) { /* follows links: a ..data swap shows */
		s.ok = 1;
		s.dev = st.st_dev;
		s.ino = st.st_ino;
		s.size = st.st_size;
		s.mtime = st.st_mtim;
		s.ctime = st.st_ctim;
	}
	return s;
}

static int
same(const struct seen *a, const struct seen *b)
{
	return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* The certificate ends within TLS_WARN_S: said when loaded (always), and
 * else once a day. */
static void
warn_expiry(struct tls *t, long long not_after, int always)
{
	long long now = (long long)time(NULL);
	char when[40];

	if (not_after - now > TLS_WARN_S ||
	    (!always && now / 86400 == t->warned_day))
		return;
	t->warned_day = now / 86400;
	utc_time(not_after, when, sizeof(when));
	log_warn("tls: the certificate in %s expires at %s, within 7 days",
	         t->cert_path, when);
}

struct tls *
tls_open(const char *cert_path, const char *key_path, char *err, size_t len)
{
	struct tls *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	t->warned_day = -1;
	t->cert_path = strdup(cert_path);
	t->key_path = strdup(key_path);
	if (t->cert_path == NULL || t->key_path == NULL) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	t->cert_seen = look(cert_path);
	t->key_seen = look(key_path);
	t->cur = pair_load(cert_path, key_path, err, len);
	if (t->cur == NULL)
		goto fail;
	pthread_mutex_init(&t->lock, NULL);
	atomic_init(&t->not_after, t->cur->not_after);
	atomic_init(&t->reloads_ok, 0);
	atomic_init(&t->reloads_failed, 0);
	return t;
fail:
	free(t->cert_path);
	free(t->key_path);
	free(t);
	return NULL;
}

int
tls_check_priorities(const char *priorities, char *err, size_t len)
{
	gnutls_priority_t p;
	const char *at = NULL;

	if (gnutls_priority_init(&p, priorities, &at) != 0) {
		snprintf(err, len,
		         "--tls-priorities: GnuTLS refuses '%.200s' at "
		         "'%.100s'",
		         priorities, at != NULL ? at : "");
		return -1;
	}
	gnutls_priority_deinit(p);
	return 0;
}

void
tls_install(struct tls *t)
{
	char when[40];

	installed = t;
	utc_time(t->cur->not_after, when, sizeof(when));
	log_info("tls: certificate %s (%u in the chain, valid until %s), key "
	         "%s",
	         t->cert_path, t->cur->n, when, t->key_path);
	warn_expiry(t, t->cur->not_after, 1);
}

int
tls_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
             gnutls_pcert_st **certs, unsigned int *certs_length,
             gnutls_ocsp_data_st **ocsp, unsigned int *ocsp_length,
             gnutls_privkey_t *privkey, unsigned int *flags)
{
	struct tls *t = installed;
	gnutls_pcert_st *pc = NULL;
	gnutls_privkey_t pk = NULL;
	unsigned int made = 0;
	int ret = -1;

	(void)session;
	(void)info;
	if (t == NULL)
		return -1;
	pthread_mutex_lock(&t->lock);
	pc = gnutls_malloc(t->cur->n * sizeof(*pc));
	if (pc == NULL)
		goto out;
	for (; made < t->cur->n; made++)
		if (gnutls_pcert_import_x509_raw(&pc[made],
		                                 &t->cur->certs[made],
		                                 GNUTLS_X509_FMT_DER, 0) != 0)
			goto out;
	if (gnutls_privkey_init(&pk) != 0)
		goto out;
	if (gnutls_privkey_import_x509_raw(pk, &t->cur->key,
	                                   GNUTLS_X509_FMT_DER, NULL, 0) != 0)
		goto out;
	*certs = pc; /* GnuTLS's now: it frees them after the handshake */
	*certs_length = made;
	*privkey = pk;
	*ocsp = NULL;
	*ocsp_length = 0;
	*flags = GNUTLS_CERT_RETR_DEINIT_ALL;
	pc = NULL;
	pk = NULL;
	ret = 0;
out:
	pthread_mutex_unlock(&t->lock);
	if (pk != NULL)
		gnutls_privkey_deinit(pk);
	if (pc != NULL) {
		for (unsigned int i = 0; i < made; i++)
			gnutls_pcert_deinit(&pc[i]);
		gnutls_free(pc);
	}
	return ret;
}

enum tls_reload
tls_reload(struct tls *t, int force)
{
	struct seen cs = look(t->cert_path), ks = look(t->key_path);
	struct pair *p, *old;
	char err[512], when[40];

	int looked_same = same(&cs, &t->cert_seen) && same(&ks, &t->key_seen);

	if (!force && looked_same && !t->failing) {
		warn_expiry(t, atomic_load(&t->not_after), 0);
		return TLS_UNCHANGED;
	}
	t->cert_seen = cs;
	t->key_seen = ks;
	p = pair_load(t->cert_path, t->key_path, err, sizeof(err));
	if (p == NULL) {
		/* The same failure of the same files, tried again: no new
		 * line, no new count. */
		if (!force && looked_same && t->failing &&
		    strcmp(err, t->why) == 0)
			return TLS_FAILED;
		t->failing = 1;
		snprintf(t->why, sizeof(t->why), "%s", err);
		atomic_fetch_add(&t->reloads_failed, 1);
		log_warn("tls: keeping the certificate in use: %s", err);
		return TLS_FAILED;
	}
	t->failing = 0;
	/* Touched but not changed (a copy of the same files): no reload. */
	if (!force && strcmp(p->cert_pem, t->cur->cert_pem) == 0 &&
	    strcmp(p->key_pem, t->cur->key_pem) == 0) {
		pair_free(p);
		return TLS_UNCHANGED;
	}
	pthread_mutex_lock(&t->lock);
	old = t->cur;
	t->cur = p;
	pthread_mutex_unlock(&t->lock);
	pair_free(old); /* no handshake holds it: each took a copy */
	atomic_store(&t->not_after, p->not_after);
	atomic_fetch_add(&t->reloads_ok, 1);
	utc_time(p->not_after, when, sizeof(when));
	log_info("tls: new certificate from %s (%u in the chain, valid until "
	         "%s)",
	         t->cert_path, p->n, when);
	warn_expiry(t, p->not_after, 1);
	return TLS_RELOADED;
}

long long
tls_expiry(const struct tls *t)
{
	return atomic_load(&t->not_after);
}

void
tls_reloads(const struct tls *t, unsigned long long *ok,
            unsigned long long *failed)
{
	*ok = atomic_load(&t->reloads_ok);
	*failed = atomic_load(&t->reloads_failed);
}

void
tls_close(struct tls *t)
{
	if (t == NULL)
		return;
	if (installed == t)
		installed = NULL;
	pair_free(t->cur);
	pthread_mutex_destroy(&t->lock);
	free(t->cert_path);
	free(t->key_path);
	free(t);
}
