/* SPDX-License-Identifier: MIT */
/* status.h -- the one table of HTTP status codes and their reason phrases */
#ifndef MICROD_STATUS_H
#define MICROD_STATUS_H

#include <stddef.h>

/* The codes IANA registers (RFC 9110 and the rest), 100-511. */
#define STATUS_COUNT 61

/* The reason phrase ("Created" for 201), "Unknown" for an unregistered code. */
const char *status_title(unsigned int code);

/*
 * A dense index of the registered codes, for tables indexed by status
 * (metrics): 0 to STATUS_COUNT - 1, or STATUS_COUNT for any other code.
 */
size_t status_index(unsigned int code);

/* The code at an index below STATUS_COUNT. */
unsigned int status_code(size_t index);

#endif
