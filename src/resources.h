/* SPDX-License-Identifier: MIT */
/* resources.h -- the CPUs and memory microd may use, and what they size */
#ifndef MICROD_RESOURCES_H
#define MICROD_RESOURCES_H

#include <stddef.h>

struct resources {
	unsigned int cpus;         /* CPUs this process may use, at least 1 */
	char cpus_from[128];       /* where that came from, for the log */
	unsigned long long memory; /* bytes it may use; 0: no limit found */
	char memory_from[128];
	/* Descriptors it may open (RLIMIT_NOFILE, its soft limit raised to
	 * the hard one by resources_read); 0: unknown. */
	unsigned long long files;
};

/*
 * Raises the soft descriptor limit to the hard one, as nginx's
 * worker_rlimit_nofile and Go's runtime do: every client connection holds
 * one. Reads it, the affinity mask, the cgroup CPU quota (v2 cpu.max, v1
 * cpu.cfs_quota_us over cpu.cfs_period_us, rounded up) and the cgroup memory
 * limit (v2 memory.max, v1 memory.limit_in_bytes), each the smallest over the
 * process's cgroup and its ancestors. What cannot be read counts as no limit.
 */
void resources_read(struct resources *r);

struct config;

/*
 * The defaults that follow from res for the options no flag or variable set:
 * the threads (the CPUs), the connection limit (the descriptors, less
 * FILES_RESERVE), and under a memory limit the body budget and a lower
 * connection limit if that is what fits. Each *_from is the flag or variable
 * that set the option, or NULL; cfg's threads_from, budget_from and
 * connections_from say whence.
 */
void resources_fit(struct config *cfg, const struct resources *res,
                   const char *threads_from, const char *limit_from,
                   const char *budget_from);

/*
 * The pure parts, for tests. Each returns 1 for a limit, 0 for none ("max",
 * -1, or a v1 "unlimited" value near 2^63), -1 for text it cannot read.
 */
int resources_parse_cpu_max(const char *text, unsigned long long *quota,
                            unsigned long long *period);
int resources_parse_memory(const char *text, unsigned long long *bytes);

/* CPUs a quota allows, rounded up, at least 1. */
unsigned int resources_quota_cpus(unsigned long long quota,
                                  unsigned long long period);

/*
 * The cgroup path of a controller ("memory", "cpu"; NULL for the v2 unified
 * hierarchy) in /proc/self/cgroup text. 0, or -1 when it has none.
 */
int resources_cgroup_path(const char *proc_cgroup, const char *controller,
                          char *out, size_t outlen);

/*
 * The directory holding a cgroup's files, from /proc/self/mountinfo text:
 * the mount of that hierarchy (cgroup2 for controller NULL, else a cgroup
 * mount whose options name the controller) joined with the cgroup path
 * below the mount's root. Returns the mount point's length (the part of out
 * above the cgroup), or -1 when none is mounted or the path is not under it.
 */
int resources_cgroup_dir(const char *mountinfo, const char *controller,
                         const char *cgroup_path, char *out, size_t outlen);

/*
 * Reads a small file (procfs, sysfs) whole into buf, NUL-terminated.
 * Returns its length, or -1 when it cannot be read or does not fit.
 */
int resources_read_text(const char *path, char *buf, size_t len);

#endif
