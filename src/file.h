/* SPDX-License-Identifier: MIT */
/* file.h -- read a small configuration file whole */
#ifndef MICROD_FILE_H
#define MICROD_FILE_H

#include <stddef.h>

/*
 * The file's bytes, NUL-terminated, in *out (the caller's to free), and
 * their count in *out_len unless it is NULL (a NUL byte in the file makes
 * it more than strlen); -1 with a message naming path in err, the bytes
 * read wiped. Only a regular file of at most max bytes is
 * read, opened without blocking: a FIFO put in a file's place must not hang
 * the main thread, which also takes signals.
 */
int file_read(const char *path, size_t max, char **out, size_t *out_len,
              char *err, size_t len);

#endif
