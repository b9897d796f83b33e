/* SPDX-License-Identifier: MIT */
/* healthz.h -- the probe endpoints: liveness and readiness, whole or one check
 */
#ifndef MICROD_HEALTHZ_H
#define MICROD_HEALTHZ_H

#include "request.h"

handler_fn handle_health;
handler_fn handle_ready;
handler_fn handle_livez;
handler_fn handle_readyz;
handler_fn handle_livez_one;
handler_fn handle_readyz_one;

/* Whether the request's {name} parameter names a configured check of its
 * route's group: liveness under /livez/, readiness under /readyz/. */
int healthz_names_check(const struct request *req);

#endif
