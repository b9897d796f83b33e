/* SPDX-License-Identifier: MIT */
/* refusal.h -- answering the waiting clients when microd cannot start */
#ifndef MICROD_REFUSAL_H
#define MICROD_REFUSAL_H

/*
 * Accepts the connections already waiting on listen_fd (a socket the service
 * manager passed) and answers each with a 503 problem whose detail is
 * detail, then closes it; at most a few hundred, for at most a second.
 * Without this the queued connections would have the socket start the
 * service again at once. Returns how many were answered, -1 on ENOMEM.
 */
int refusal_answer(int listen_fd, const char *detail);

#endif
