/* SPDX-License-Identifier: MIT */
/*
 * json.c -- fuzz target: microd's JSON writer against jansson's. Input: any
 * bytes, parsed as JSON text (NUL escapes allowed, so strings hold them);
 * whatever parses must be written by encode_json() exactly as json_dumpb()
 * writes it, else abort().
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = json_loadb((const char *)data, size,
	                       JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	char *ours = NULL, *theirs = NULL;
	size_t a, b;

	if (v == NULL)
		return 0;
	a = encode_json(v, NULL, 0);
	b = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	/* Parsed text is never deeper than jansson's parser allows (2048). */
	if (a != b || a == 0)
		abort();
	ours = malloc(a);
	theirs = malloc(b);
	if (ours != NULL && theirs != NULL &&
	    (encode_json(v, ours, a) != a ||
	     json_dumpb(v, theirs, b, JSON_COMPACT | JSON_ENCODE_ANY) != b ||
	     memcmp(ours, theirs, a) != 0))
		abort();
	free(ours);
	free(theirs);
	json_decref(v);
	return 0;
}
