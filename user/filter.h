/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The record filters in user space, for replays.  A live run filters in the
 * kernel (wanted() in bpf/closetrace.bpf.c) with the same rules.
 */
#ifndef CT_FILTER_H
#define CT_FILTER_H

#include <stdbool.h>
#include "closetrace.h"
#include "options.h"

bool record_wanted(const struct ct_options *o, const struct ct_record *r);

#endif
