/* SPDX-License-Identifier: MIT */
/* file.c -- read a small configuration file (a certificate, a key, the
 * token list) whole, without blocking on what is not a regular file */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
file_read(const char *path, size_t max, char **out, size_t *out_len, char *err,
          size_t len)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	size_t got = 0;
	char *buf = NULL;

	*out = NULL;
	if (fd < 0) {
		snprintf(err, len, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, len, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, len, "cannot read %s: %s", path,
		         S_ISDIR(st.st_mode) ? strerror(EISDIR)
		                             : "not a regular file");
		goto fail;
	}
	if ((size_t)st.st_size > max) {
		snprintf(err, len, "%s is larger than %zu bytes", path, max);
		goto fail;
	}
	buf = malloc(max + 1);
	if (buf == NULL) {
		snprintf(err, len, "%s: out of memory", path);
		goto fail;
	}
	for (;;) { /* to the end: the file may have grown since fstat */
		ssize_t n = read(fd, buf + got, max + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, len, "cannot read %s: %s", path,
			         strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max) {
			snprintf(err, len, "%s is larger than %zu bytes", path,
			         max);
			goto fail;
		}
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	if (out_len != NULL)
		*out_len = got;
	return 0;
fail:
	close(fd);
	if (buf != NULL) /* a key's or a token's bytes, maybe */
		explicit_bzero(buf, got);
	free(buf);
	return -1;
}
