# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
# Churn benchmark: include from the top Makefile (after its variables), as
#   include tests/bench/bench.mk
# Uses OUTPUT, CLANG, CC, BPFTOOL, PC_CFLAGS, PC_LIBS, Q, msg from there.
#   make bench                         # full run, writes $(OUTPUT)/bench.json
#   make bench BENCH_ARGS=--quick      # a few seconds' smoke run
#   make bench BENCH_ARGS='--mode client-first,server-first --rounds 3 --seconds 5'

BENCH_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BENCH_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE
BENCH_BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BENCH_ARCH) -Wall -Werror \
	-I$(OUTPUT) $(PC_CFLAGS)
BENCH_ARGS ?=

.PHONY: bench bench-tools

bench-tools: $(OUTPUT)/churn $(OUTPUT)/floor

$(OUTPUT)/churn: tests/bench/churn.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(BENCH_CFLAGS) $< -pthread -o $@

$(OUTPUT)/floor.bpf.o: tests/bench/floor.bpf.c $(OUTPUT)/vmlinux.h | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BENCH_BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/floor.skel.h: $(OUTPUT)/floor.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name floor_bpf > $@

$(OUTPUT)/floor: tests/bench/floor.c $(OUTPUT)/floor.skel.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(BENCH_CFLAGS) -I$(OUTPUT) $(PC_CFLAGS) $< $(PC_LIBS) -o $@

bench: $(OUTPUT)/closetrace $(OUTPUT)/churn $(OUTPUT)/floor
	$(Q)python3 scripts/bench --build $(OUTPUT) $(BENCH_ARGS)
