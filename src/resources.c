/* SPDX-License-Identifier: MIT */
/* resources.c -- the CPUs and memory microd may use, and what they size */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "resources.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "number.h"

/*
 * What the memory-derived defaults assume: microd's own memory besides its
 * connections and bodies (binary, libraries, thread stacks, the log ring),
 * and what one connection costs beyond --connection-memory (the kernel's
 * socket and microd's bookkeeping). Measured: an idle connection adds 7 KiB
 * to the cgroup's usage, one that filled 14 KiB of headers 19 KiB (microd.8,
 * "Defaults inside a container").
 */
#define BASE_MEMORY ((unsigned long long)8 << 20)
#define CONNECTION_OVERHEAD ((unsigned long long)8 << 10)
#define MIN_CONNECTIONS 16U

/*
 * Descriptors kept for other things than client connections: the standard
 * ones, listening sockets, files and outbound connections; per worker thread
 * its epoll set, inter-thread channel, ticker socketpair and shadow set
 * (src/server/ticker.c) and the watchdog's check; per handler thread the
 * descriptor that tells it its client left (src/server/gone.c); and each
 * connection of the database pool.
 */
#define FILES_RESERVE(threads, handlers, db)                                   \
	(256ULL + 8ULL * (threads) + (unsigned long long)(handlers) + (db))

/* Past this the default connection limit stops following the descriptors. */
#define MAX_CONNECTIONS 1000000ULL

/* A v1 limit this high is the kernel's "unlimited" (LONG_MAX, page-aligned). */
#define V1_UNLIMITED (1ULL << 62)

/* Copies the first whitespace-delimited word of *s into out; advances *s. */
static int
word(const char **s, char *out, size_t outlen)
{
	const char *p = *s;
	size_t n;

	while (*p == ' ' || *p == '\t')
		p++;
	n = strcspn(p, " \t\n");
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	*s = p + n;
	return 0;
}

int
resources_parse_cpu_max(const char *text, unsigned long long *quota,
                        unsigned long long *period)
{
	char q[32], p[32];
	uintmax_t qv, pv = 100000;
	const char *s = text;

	if (word(&s, q, sizeof(q)) != 0)
		return -1;
	/* v2 "QUOTA PERIOD"; v1 passes the quota alone (period apart). */
	if (word(&s, p, sizeof(p)) == 0 &&
	    (number_parse(p, UINT64_MAX, &pv) != 0 || pv == 0))
		return -1;
	if (strcmp(q, "max") == 0 || strcmp(q, "-1") == 0)
		return 0;
	if (number_parse(q, UINT64_MAX, &qv) != 0 || qv == 0)
		return -1;
	*quota = qv;
	*period = pv;
	return 1;
}

int
resources_parse_memory(const char *text, unsigned long long *bytes)
{
	char v[32];
	uintmax_t n;
	const char *s = text;

	if (word(&s, v, sizeof(v)) != 0)
		return -1;
	if (strcmp(v, "max") == 0)
		return 0;
	if (number_parse(v, UINT64_MAX, &n) != 0)
		return -1;
	if (n >= V1_UNLIMITED)
		return 0;
	*bytes = n;
	return 1;
}

unsigned int
resources_quota_cpus(unsigned long long quota, unsigned long long period)
{
	unsigned long long cpus =
	    quota / period + (quota % period != 0); /* no overflow */

	return cpus < 1 ? 1 : cpus > 1024 ? 1024 : (unsigned int)cpus;
}

/* Does the comma-separated list (length n) hold name as one of its items? */
static int
list_has(const char *list, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; p < list + n;) {
		size_t item = strcspn(p, ",");

		if (item > (size_t)(list + n - p))
			item = (size_t)(list + n - p);
		if (item == len && strncmp(p, name, len) == 0)
			return 1;
		p += item + 1;
	}
	return 0;
}

/*
 * A cgroup outside the process's cgroup namespace shows as "/../..": it
 * cannot be reached below the mount.
 */
static int
has_dotdot(const char *path, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (path[i] == '.' && path[i + 1] == '.' &&
		    (i == 0 || path[i - 1] == '/') &&
		    (i + 2 == n || path[i + 2] == '/'))
			return 1;
	return 0;
}

int
resources_cgroup_path(const char *proc_cgroup, const char *controller,
                      char *out, size_t outlen)
{
	/* Lines are "ID:CONTROLLERS:PATH"; v2 is "0::PATH". */
	for (const char *line = proc_cgroup; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		const char *c1 = memchr(line, ':', len), *c2, *path;

		if (c1 != NULL &&
		    (c2 = memchr(c1 + 1, ':', (size_t)(line + len - c1 - 1))) !=
		        NULL) {
			size_t cl = (size_t)(c2 - c1 - 1);
			int match =
			    controller == NULL
			        ? cl == 0 && c1 - line == 1 && *line == '0'
			        : list_has(c1 + 1, cl, controller);

			path = c2 + 1;
			if (match && (size_t)(line + len - path) < outlen &&
			    *path == '/' &&
			    !has_dotdot(path, (size_t)(line + len - path))) {
				memcpy(out, path, (size_t)(line + len - path));
				out[line + len - path] = '\0';
				return 0;
			}
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	return -1;
}

/* mountinfo writes space, tab, newline and backslash as \\ooo (octal). */
static void
unescape(char *s)
{
	char *out = s;

	for (const char *p = s; *p != '\0'; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' &&
		    p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
			*out++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 +
			                (p[3] - '0'));
			p += 3;
		} else {
			*out++ = *p;
		}
	}
	*out = '\0';
}

int
resources_cgroup_dir(const char *mountinfo, const char *controller,
                     const char *cgroup_path, char *out, size_t outlen)
{
	for (const char *line = mountinfo; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		char root[512] = "", mnt[512] = "", type[32] = "", src[64] = "",
		     opts[512] = "", skip[512] = "";
		const char *s = line, *dash;
		int ok = 1;

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - TYPE
		 * SOURCE SUPER-OPTIONS */
		for (int i = 0; i < 3 && ok; i++)
			ok = word(&s, skip, sizeof(skip)) == 0;
		ok = ok && word(&s, root, sizeof(root)) == 0 &&
		     word(&s, mnt, sizeof(mnt)) == 0;
		dash = ok ? strstr(s, " - ") : NULL;
		if (dash != NULL && dash < line + len) {
			s = dash + 3;
			ok = word(&s, type, sizeof(type)) == 0 &&
			     word(&s, src, sizeof(src)) == 0 &&
			     word(&s, opts, sizeof(opts)) == 0;
		} else {
			ok = 0;
		}
		if (ok && (controller == NULL ? strcmp(type, "cgroup2") == 0
		                              : strcmp(type, "cgroup") == 0 &&
		                                    list_has(opts, strlen(opts),
		                                             controller))) {
			size_t rl;
			const char *below;

			unescape(root);
			unescape(mnt);
			rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
			below = cgroup_path + rl;
			/* The cgroup must be the root or under it; else another
			 * mount of the hierarchy may hold it. */
			if (strncmp(cgroup_path, root, rl) == 0 &&
			    (*below == '/' || *below == '\0')) {
				if (strcmp(below, "/") == 0)
					below = "";
				if ((size_t)snprintf(out, outlen, "%s%s", mnt,
				                     below) >= outlen)
					return -1;
				return (int)strlen(mnt);
			}
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	return -1;
}

int
resources_read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd < 0)
		return -1;
	/* procfs hands out about a page per read(): read to the end. */
	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			buf[got] = '\0';
			return n < 0 ? -1 : (int)got;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return -1; /* longer than buf: not all of it */
}

/* What resources_read reads once and looks things up in. */
struct proc_text {
	char mountinfo[1 << 18]; /* hundreds of mounts fit */
	char cgroup[4096];
};

/*
 * The directory of this process's cgroup for a controller (NULL: v2), and
 * how much of it is the mount point. 0, or -1.
 */
static int
own_dir(const struct proc_text *pt, const char *controller, char *dir,
        size_t len, size_t *mount_len)
{
	char path[512];
	int n;

	if (resources_cgroup_path(pt->cgroup, controller, path, sizeof(path)) !=
	    0)
		return -1;
	n = resources_cgroup_dir(pt->mountinfo, controller, path, dir, len);
	if (n < 0)
		return -1;
	*mount_len = (size_t)n;
	return 0;
}

typedef void visit_fn(const char *dir, const char *text, void *arg);

/*
 * Calls fn with the text of file name in dir and in each ancestor up to the
 * mount point (the first mount_len bytes of dir). Changes dir.
 */
static void
walk_up(char *dir, size_t mount_len, const char *name, visit_fn *fn, void *arg)
{
	char file[1100], text[64];

	for (;;) {
		char *slash;

		if ((size_t)snprintf(file, sizeof(file), "%s/%s", dir, name) <
		        sizeof(file) &&
		    resources_read_text(file, text, sizeof(text)) >= 0)
			fn(dir, text, arg);
		slash = strrchr(dir, '/');
		if (slash == NULL || (size_t)(slash - dir) < mount_len)
			return;
		*slash = '\0';
	}
}

static void
take_quota(struct resources *r, const char *dir, const char *text)
{
	unsigned long long quota = 0, period = 0;
	unsigned int cpus;

	if (resources_parse_cpu_max(text, &quota, &period) != 1)
		return;
	cpus = resources_quota_cpus(quota, period);
	if (cpus < r->cpus) {
		r->cpus = cpus;
		snprintf(r->cpus_from, sizeof(r->cpus_from),
		         "cgroup CPU quota %llu/%llu us in %.80s", quota,
		         period, dir);
	}
}

static void
take_cpu_max(const char *dir, const char *text, void *arg)
{
	take_quota(arg, dir, text);
}

/* v1 keeps the period in a file beside the quota. */
static void
take_cfs_quota(const char *dir, const char *text, void *arg)
{
	char file[1100], period[32], both[96];

	if ((size_t)snprintf(file, sizeof(file), "%s/cpu.cfs_period_us", dir) >=
	        sizeof(file) ||
	    resources_read_text(file, period, sizeof(period)) < 0)
		return;
	period[strcspn(period, "\n")] = '\0';
	if ((size_t)snprintf(both, sizeof(both), "%.*s %s",
	                     (int)strcspn(text, "\n"), text,
	                     period) >= sizeof(both))
		return;
	take_quota(arg, dir, both);
}

static void
take_memory(const char *dir, const char *text, void *arg)
{
	struct resources *r = arg;
	unsigned long long bytes = 0;

	if (resources_parse_memory(text, &bytes) != 1)
		return;
	if (r->memory == 0 || bytes < r->memory) {
		r->memory = bytes;
		snprintf(r->memory_from, sizeof(r->memory_from),
		         "cgroup memory limit in %.90s", dir);
	}
}

void
resources_read(struct resources *r)
{
	struct proc_text *pt = NULL;
	char dir[1024];
	size_t ml;
	cpu_set_t set;
	struct rlimit nofile;
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	r->cpus = online < 1 ? 1 : (unsigned int)online;
	snprintf(r->cpus_from, sizeof(r->cpus_from), "%u online CPUs", r->cpus);
	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_COUNT(&set) > 0 && (unsigned int)CPU_COUNT(&set) < r->cpus) {
		r->cpus = (unsigned int)CPU_COUNT(&set);
		snprintf(r->cpus_from, sizeof(r->cpus_from),
		         "%u CPU%s in the affinity mask", r->cpus,
		         r->cpus == 1 ? "" : "s");
	}
	r->memory = 0;
	snprintf(r->memory_from, sizeof(r->memory_from),
	         "no cgroup memory limit");
	r->files = 0;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
		if (nofile.rlim_cur < nofile.rlim_max) {
			struct rlimit raised = nofile;

			/* "unlimited" is not a number the kernel takes here */
			raised.rlim_cur = nofile.rlim_max == RLIM_INFINITY
			                      ? MAX_CONNECTIONS
			                      : nofile.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
				nofile = raised;
		}
		r->files = nofile.rlim_cur == RLIM_INFINITY
		               ? MAX_CONNECTIONS
		               : (unsigned long long)nofile.rlim_cur;
	}

	pt = malloc(sizeof(*pt));
	if (pt == NULL ||
	    resources_read_text("/proc/self/mountinfo", pt->mountinfo,
	                        sizeof(pt->mountinfo)) < 0 ||
	    resources_read_text("/proc/self/cgroup", pt->cgroup,
	                        sizeof(pt->cgroup)) < 0)
		goto out;
	if (own_dir(pt, NULL, dir, sizeof(dir), &ml) == 0) {
		char copy[sizeof(dir)];

		memcpy(copy, dir, sizeof(copy));
		walk_up(copy, ml, "cpu.max", take_cpu_max, r);
		walk_up(dir, ml, "memory.max", take_memory, r);
	}
	if (own_dir(pt, "cpu", dir, sizeof(dir), &ml) == 0)
		walk_up(dir, ml, "cpu.cfs_quota_us", take_cfs_quota, r);
	if (own_dir(pt, "memory", dir, sizeof(dir), &ml) == 0)
		walk_up(dir, ml, "memory.limit_in_bytes", take_memory, r);
out:
	free(pt);
}

void
resources_fit(struct config *cfg, const struct resources *res,
              const char *threads_from, const char *limit_from,
              const char *budget_from)
{
	unsigned long long usable = 0, per_conn, conns, budget;
	char memory[192];

	if (threads_from == NULL) {
		cfg->threads = res->cpus < 1     ? 1
		               : res->cpus > 256 ? 256
		                                 : res->cpus;
		snprintf(cfg->threads_from, sizeof(cfg->threads_from), "%s",
		         res->cpus_from);
	}
	if (budget_from == NULL) {
		cfg->body_budget = (size_t)8 << 20;
		if (cfg->body_budget < 2 * cfg->max_body)
			cfg->body_budget = 2 * cfg->max_body;
	}
	snprintf(cfg->budget_from, sizeof(cfg->budget_from), "%s",
	         budget_from != NULL ? budget_from : "default");
	snprintf(cfg->connections_from, sizeof(cfg->connections_from), "%s",
	         limit_from != NULL ? limit_from : "default");
	if (limit_from == NULL && res->files > 0) {
		/* --database-pool's own default comes later: the handlers. */
		unsigned int db = cfg->database == NULL ? 0
		                  : cfg->database_pool != 0
		                      ? cfg->database_pool
		                      : cfg->handler_threads;
		unsigned long long reserve =
		    FILES_RESERVE(cfg->threads, cfg->handler_threads, db);

		conns = res->files > reserve + MIN_CONNECTIONS
		            ? res->files - reserve
		            : MIN_CONNECTIONS;
		if (conns > MAX_CONNECTIONS)
			conns = MAX_CONNECTIONS;
		cfg->connection_limit = (unsigned int)conns;
		snprintf(cfg->connections_from, sizeof(cfg->connections_from),
		         "the descriptor limit %llu, less %llu", res->files,
		         reserve);
	}
	if (res->memory == 0 || (budget_from != NULL && limit_from != NULL))
		return;
	if (res->memory >= (1ULL << 20))
		snprintf(memory, sizeof(memory), "%llu MiB %s",
		         res->memory >> 20, res->memory_from);
	else
		snprintf(memory, sizeof(memory), "%llu KiB %s",
		         res->memory >> 10, res->memory_from);
	/* A quarter of the limit stays free: page cache, fragmentation. */
	if (res->memory - res->memory / 4 > BASE_MEMORY)
		usable = res->memory - res->memory / 4 - BASE_MEMORY;
	if (budget_from == NULL) {
		budget = usable / 4;
		if (budget < cfg->max_body)
			budget = cfg->max_body;
		if (budget < cfg->body_budget) {
			cfg->body_budget = (size_t)budget;
			snprintf(cfg->budget_from, sizeof(cfg->budget_from),
			         "%s", memory);
		}
	}
	if (limit_from == NULL) {
		per_conn = cfg->connection_memory + CONNECTION_OVERHEAD;
		conns = usable > cfg->body_budget
		            ? (usable - cfg->body_budget) / per_conn
		            : 0;
		if (conns < MIN_CONNECTIONS)
			conns = MIN_CONNECTIONS;
		if (conns < cfg->connection_limit) {
			cfg->connection_limit = (unsigned int)conns;
			snprintf(cfg->connections_from,
			         sizeof(cfg->connections_from), "%s", memory);
		}
	}
}
