/* SPDX-License-Identifier: MIT */
/* fuzz.h -- the libFuzzer entry points every fuzz target defines */
#ifndef MICROD_FUZZ_H
#define MICROD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/*
 * Optional, as in libFuzzer: a target with nothing to set up leaves it out.
 * Non-zero means the target cannot run.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
