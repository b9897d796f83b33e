/* SPDX-License-Identifier: MIT */
/*
 * driver.c -- replays a fuzz target's corpus without libFuzzer (TAP), so
 * `make check` runs every corpus entry under the sanitizers with any C
 * compiler: one test line per file. build/tests/fuzz-NAME replays
 * tests/fuzz/corpus/NAME (or the directory given as its argument).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int
main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/'), *name;
	char dir[1024];
	struct dirent **names;
	int n, count = 0, failed = 0;

	base = base != NULL ? base + 1 : argv[0];
	name = strncmp(base, "fuzz-", 5) == 0 ? base + 5 : base;
	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else
		snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", name);
	n = scandir(dir, &names, NULL, by_name);

	if (n < 0) {
		printf("not ok 1 - cannot read the corpus %s\n1..1\n", dir);
		return 1;
	}
	if (LLVMFuzzerInitialize != NULL &&
	    LLVMFuzzerInitialize(&argc, &argv) != 0) {
		printf("not ok 1 - the target cannot set itself up\n1..1\n");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		unsigned char *data;
		size_t len = 0;

		if (names[i]->d_name[0] == '.') {
			free(names[i]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		data = slurp(path, &len);
		count++;
		if (data == NULL) {
			failed++;
			printf("not ok %d - %s: unreadable\n", count, path);
		} else {
			/* A crash ends the program: prove reports it. */
			LLVMFuzzerTestOneInput(data, len);
			printf("ok %d - %s (%zu bytes)\n", count, path, len);
		}
		free(data);
		free(names[i]);
	}
	free(names);
	printf("1..%d\n", count);
	return failed != 0;
}
