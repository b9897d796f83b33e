/* SPDX-License-Identifier: MIT */
/* fuzz.h -- the libFuzzer entry points every fuzz target defines */
#ifndef MICROD_FUZZ_H
#define MICROD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
