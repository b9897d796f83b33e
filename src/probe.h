/* SPDX-License-Identifier: MIT */
/* probe.h -- `microd probe`: one GET with a deadline, for health checks */
#ifndef MICROD_PROBE_H
#define MICROD_PROBE_H

/* argv[0] is "probe". Returns the exit status: 0 healthy, 1 not. */
int probe_main(int argc, char **argv);

#endif
