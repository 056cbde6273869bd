# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
# closetrace build.  Everything generated goes under $(OUTPUT).

OUTPUT ?= build
CLANG ?= clang
CC ?= cc
BPFTOOL ?= bpftool
PKG_CONFIG ?= pkg-config
INSTALL ?= install
prefix ?= /usr/local
DESTDIR ?=

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
VMLINUX := vmlinux/vmlinux_$(ARCH).h

LIBS_PC := libbpf libelf zlib
PC_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(LIBS_PC) 2>/dev/null)
PC_LIBS := $(shell $(PKG_CONFIG) --libs $(LIBS_PC) 2>/dev/null)

CFLAGS ?= -O2 -g
LDFLAGS += -pthread
CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
CPPFLAGS += -I$(OUTPUT) -Ibpf -Iuser $(PC_CFLAGS) -D_GNU_SOURCE
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	-I$(OUTPUT) -Ivmlinux -Ibpf $(PC_CFLAGS)

# user-space modules; closetrace.c holds main()
USER_MODS := options kernel_features output correlate sysinfo procfs trace_file summary tw_reuse filter pipeline replay explain sockdiag holders watch why_busy inventory
USER_OBJS := $(patsubst %,$(OUTPUT)/%.o,$(USER_MODS))
UNIT_TESTS := $(OUTPUT)/test_units
HELPERS := $(OUTPUT)/ctscen

ifeq ($(V),1)
	Q =
	msg =
else
	Q = @
	msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all clean install test vmtest check stress unit vmlinux deps check-deps

all: $(OUTPUT)/closetrace

check-deps:
	$(Q)for t in $(CLANG) $(BPFTOOL) $(PKG_CONFIG); do \
		command -v $$t >/dev/null || { echo "missing build tool: $$t (run scripts/setup)" >&2; exit 1; }; done
	$(Q)$(PKG_CONFIG) --exists $(LIBS_PC) || { echo "missing -dev packages for: $(LIBS_PC) (run scripts/setup)" >&2; exit 1; }

$(OUTPUT):
	$(Q)mkdir -p $@

$(OUTPUT)/vmlinux.h: $(VMLINUX) | $(OUTPUT)
	$(Q)ln -sf $(abspath $(VMLINUX)) $@

$(OUTPUT)/%.bpf.o: bpf/%.bpf.c bpf/closetrace.h bpf/compat.bpf.h bpf/summary_account.h $(OUTPUT)/vmlinux.h | $(OUTPUT) check-deps
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/%.skel.h: $(OUTPUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

$(OUTPUT)/closetrace.o: $(OUTPUT)/closetrace.skel.h

$(OUTPUT)/%.o: user/%.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(OUTPUT)/closetrace: $(OUTPUT)/closetrace.o $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(PC_LIBS) -o $@

# unit tests: user-space logic, no root needed
$(OUTPUT)/test_units.o: tests/unit/test_units.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(UNIT_TESTS): $(OUTPUT)/test_units.o $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(PC_LIBS) -o $@

# sock_diag and /proc owner checks: root, run in a fresh network namespace by the suite
$(OUTPUT)/test_sockdiag.o: tests/unit/test_sockdiag.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(OUTPUT)/test_sockdiag: $(OUTPUT)/test_sockdiag.o $(USER_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(PC_LIBS) -o $@

$(OUTPUT)/ctscen: tests/helpers/ctscen.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

unit: $(UNIT_TESTS)
	$(Q)$(UNIT_TESTS)

TEST_BINS := $(OUTPUT)/closetrace $(UNIT_TESTS) $(HELPERS) $(OUTPUT)/fuzz_reader $(OUTPUT)/test_sockdiag \
	$(OUTPUT)/churn $(OUTPUT)/floor

TEST_JSON ?=
test: $(TEST_BINS)
	$(Q)python3 tests/run_tests.py --build $(OUTPUT) $(if $(TEST_JSON),--json-out $(TEST_JSON))

# the same suite inside qemu guests running Debian's 5.10, 6.1 and 6.12
# kernels (scripts/vmtest): KERNELS=6.12 for fewer, VMTEST_JSON=FILE for
# the per-test results as JSON
KERNELS ?=
VMTEST_JSON ?=
vmtest: $(TEST_BINS)
	$(Q)python3 scripts/vmtest --build $(OUTPUT) $(if $(KERNELS),--kernels $(KERNELS)) \
		$(if $(VMTEST_JSON),--json-out $(VMTEST_JSON))

# every connection accounted for under load, against the load generators' own
# log (scripts/stress): 160k connections, all TIME_WAIT at once, three modes
stress: $(OUTPUT)/closetrace $(OUTPUT)/churn
	$(Q)python3 scripts/stress --build $(OUTPUT) --connections 160000 \
		--mode json --mode record --mode summary

# the whole suite: make test, then make vmtest, one closing line for both
check: $(TEST_BINS)
	$(Q)sh scripts/check

# regenerate the kernel type header from the running kernel's BTF
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $(VMLINUX)

install: $(OUTPUT)/closetrace
	$(INSTALL) -d $(DESTDIR)$(prefix)/sbin $(DESTDIR)$(prefix)/share/man/man8
	$(INSTALL) -pt $(DESTDIR)$(prefix)/sbin $(OUTPUT)/closetrace
	$(INSTALL) -p -m 0644 -t $(DESTDIR)$(prefix)/share/man/man8 closetrace.8

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

-include $(wildcard $(OUTPUT)/*.d)

# libFuzzer target for the recording reader; the corpus starts from real recordings
FUZZ_SECONDS ?= 60
FUZZ_CORPUS := tests/fuzz/corpus
$(OUTPUT)/fuzz_reader: tests/fuzz/fuzz_reader.c user/trace_file.c user/trace_file.h bpf/closetrace.h | $(OUTPUT)
	$(call msg,FUZZ-CC,$@)
	$(Q)$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Ibpf -Iuser -D_GNU_SOURCE tests/fuzz/fuzz_reader.c user/trace_file.c -lz -o $@

.PHONY: fuzz
fuzz: $(OUTPUT)/fuzz_reader
	$(Q)mkdir -p $(OUTPUT)/fuzz-corpus
	$(Q)$(OUTPUT)/fuzz_reader -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
		-artifact_prefix=$(OUTPUT)/ $(OUTPUT)/fuzz-corpus $(FUZZ_CORPUS)
include tests/bench/bench.mk
