/* SPDX-License-Identifier: MIT */
/* handlers.h -- one function per endpoint */
#ifndef MICROD_HANDLERS_H
#define MICROD_HANDLERS_H

#include "request.h"

handler_fn handle_version;
handler_fn handle_metrics;
handler_fn handle_echo;
#if MICROD_TEST_HOOKS
handler_fn handle_test_block;
handler_fn handle_test_status;
handler_fn handle_test_trace;
#endif

#endif
