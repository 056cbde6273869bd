/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* -r: replay a recording through the same output as a live run. */
#ifndef CT_REPLAY_H
#define CT_REPLAY_H

#include "options.h"

/* returns the process exit code */
int replay_run(const struct ct_options *o);

#endif
