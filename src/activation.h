/* SPDX-License-Identifier: MIT */
/* activation.h -- listening sockets passed in by systemd (LISTEN_FDS) */
#ifndef MICROD_ACTIVATION_H
#define MICROD_ACTIVATION_H

#include <stddef.h>

/* The first descriptor systemd passes; the rest follow in order. */
#define ACTIVATION_FD_START 3

/*
 * The listening socket systemd passed to this process, if any: with
 * $LISTEN_PID naming us and $LISTEN_FDS >= 1, the one named "http" in
 * $LISTEN_FDNAMES, else (no names given) the first. Returns the descriptor,
 * ACTIVATION_NONE when nothing was passed, or ACTIVATION_ERROR with err set
 * (names given but none is "http", a bad count, or not a listening stream
 * socket). The variables are removed from the environment either way, as
 * sd_listen_fds() does, so nothing we start inherits them. Descriptors not
 * chosen are closed.
 */
enum { ACTIVATION_NONE = -1, ACTIVATION_ERROR = -2 };
/* *tls_fd: the socket named "https", if one was passed beside it, else
 * ACTIVATION_NONE. */
int activation_listen_fd(char *err, size_t errlen, int *tls_fd);

#endif
