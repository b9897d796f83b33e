# microd -- build, run, test, install. See README.md.

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
# systemd's own unit directory when pkg-config knows it, else under PREFIX.
UNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd \
                   2>/dev/null),$(PREFIX)/lib/systemd/system)
CC      ?= cc
CFLAGS  ?= -O2 -g
BUILD   ?= build
VERSION  = 0.1.0
# The commit built: git describe in a checkout, else set it (COMMIT=abc123).
COMMIT  ?= $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
PKGS     = libmicrohttpd jansson gnutls libpq
TEST_PKGS = libcurl
RUN_ARGS ?= --port 8080

WERROR  ?= -Werror
WARN     = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
           -Wall -Wextra $(WERROR) -Wshadow -Wformat=2 -Wvla \
           -Wstrict-prototypes -Wcast-qual -Wmissing-prototypes \
           -Wpointer-arith -Wwrite-strings
HARDEN   = -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3 -fstack-protector-strong \
           -fstack-clash-protection -fPIE $(SMALL)
# With every symbol bound at start (-z now), PLT stubs are only an extra
# jump: -fno-plt calls through the GOT. microd's C needs no unwind tables
# (no exceptions, no thread cancellation); dropping them keeps the stripped
# binary smaller. gdb unwinds from the -g debug info all the same;
# CFLAGS=-fasynchronous-unwind-tables puts them back for perf --call-graph
# dwarf on a stripped binary.
SMALL    = -fno-plt -fno-asynchronous-unwind-tables
LDHARD   = -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack $(LDRELR)
# Packed relative relocations (binutils 2.38+, glibc 2.36+, as on Debian 12):
# a PIE's pointer fix-ups in a few hundred bytes instead of 24 bytes each,
# 4 KiB off the stripped binary. Left out where the toolchain lacks them.
LDRELR  := $(shell printf 'int main(void){return 0;}' | $(CC) -x c - \
             -o /dev/null -Wl,--fatal-warnings -Wl,-z,pack-relative-relocs \
             2>/dev/null && echo -Wl,-z,pack-relative-relocs)
ifdef SANITIZE   # SANITIZE=address,undefined or SANITIZE=thread
HARDEN   = -fsanitize=$(SANITIZE) -fno-sanitize-recover=all \
           -fno-omit-frame-pointer -fPIE
LDHARD  += -fsanitize=$(SANITIZE)
endif

ALL_CFLAGS = $(WARN) $(HARDEN) -pthread -I$(BUILD) -Isrc \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
             $(CPPFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(LDHARD) -pthread $(LDFLAGS)
LDLIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_LIBS  = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

# Every .c of the engine (src/, src/server/), of the database layer
# (src/db/) and of the service (src/app/): a new file is built without
# editing this list.
LIB_SRC  = $(filter-out src/main.c,$(sort $(wildcard src/*.c src/server/*.c \
           src/db/*.c src/app/*.c)))
LIB_OBJ  = $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/app_sql.o
# The service's migrations: every src/app/sql/*.sql, in name order.
APP_SQL  = $(sort $(wildcard src/app/sql/*.sql))
FUZZ_TARGETS = http route config json
TESTS    = $(BUILD)/tests/unit $(BUILD)/tests/handlers $(BUILD)/tests/http \
           $(BUILD)/tests/drain $(BUILD)/tests/db \
           $(BUILD)/tests/observe $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz-%)
SCRIPT_TESTS = tests/dist.py tests/systemd.py tests/hostile.py \
               tests/stress.py tests/clients.py tests/binary.py tests/soak.py \
               tests/routes.py tests/checks.py tests/tls.py tests/trace.py \
               tests/middleware.py tests/layout.py tests/deps.py \
               tests/slowhead.py tests/migrate.py tests/database.py \
               tests/gone.py tests/notes.py tests/gateway.py \
               tests/techempower.py tests/otel.py

# Debian packages: what a build needs, and what the tests need on top. A
# word a|b|c asks for any one of them, and for a when none is installed:
# either libcurl flavour serves the tests, and asking for the other would
# have apt remove the one there and every package that depends on it.
DEB_BUILD = gcc make pkg-config libmicrohttpd-dev libjansson-dev libgnutls28-dev \
            libpq-dev
DEB_CURL  = libcurl4-openssl-dev|libcurl4-gnutls-dev|libcurl4-nss-dev
DEB_TEST  = $(DEB_BUILD) $(DEB_CURL) perl curl openssl clang-format \
            clang-tidy cppcheck binutils python3 python3-yaml prometheus \
            systemd man-db wrk valgrind postgresql nodejs $(DEB_ENGINES)
# The engine suites: a Debian 12 VM with systemd as PID 1, and podman.
DEB_ENGINES = qemu-system-x86 debootstrap e2fsprogs openssh-client podman \
              runc
ENGINE_TESTS = tests/podman.py tests/vm.py

.PHONY: all run check test-progs deps deps-test otlp-deps lint fmt clean \
        install uninstall bench fuzz fuzz-progs soak engines FORCE

all: deps $(BUILD)/microd

run: all
	exec $(BUILD)/microd $(RUN_ARGS)

# Lint, then the whole suite twice: as built, then under ASan + UBSan with
# leak detection; then the C suites, the hostile table and the stress tests
# under TSan (the pool runs handlers concurrently). TSan's own 1 s sleep at
# exit (atexit_sleep_ms) is turned off: the stress tests time exits. The
# engine suites run once, on the optimised build, between them.
check: deps-test
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory otlp-deps
	$(MAKE) --no-print-directory test-progs
	$(MAKE) --no-print-directory BUILD=$(BUILD)/sanitize \
	    SANITIZE=address,undefined test-progs
	MICROD_BIN=$(BUILD)/microd MICROD_HOOKS_BIN=$(BUILD)/hooks/microd \
	    prove -f --exec '' $(TESTS) $(SCRIPT_TESTS)
	$(MAKE) --no-print-directory engines
	MICROD_BIN=$(BUILD)/sanitize/microd \
	    MICROD_HOOKS_BIN=$(BUILD)/sanitize/hooks/microd \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    prove -f --exec '' $(TESTS:$(BUILD)/%=$(BUILD)/sanitize/%) \
	    $(SCRIPT_TESTS)
	$(MAKE) --no-print-directory BUILD=$(BUILD)/tsan SANITIZE=thread \
	    test-progs
	MICROD_BIN=$(BUILD)/tsan/microd \
	    TSAN_OPTIONS=halt_on_error=1:atexit_sleep_ms=0 \
	    MICROD_HOOKS_BIN=$(BUILD)/tsan/hooks/microd \
	    prove -f --exec '' $(TESTS:$(BUILD)/%=$(BUILD)/tsan/%) \
	    tests/hostile.py tests/stress.py tests/routes.py tests/checks.py \
	    tests/tls.py tests/middleware.py tests/slowhead.py tests/database.py \
	    tests/gone.py tests/notes.py tests/gateway.py tests/techempower.py \
	    tests/otel.py

# podman builds dist/Dockerfile and runs the image; a qemu VM boots systemd
# and installs microd as the README says. Both start from one debootstrap
# tree cached in $(BUILD)/engines (about 2 minutes the first time); each
# suite's time is printed.
engines: deps-test
	@for t in $(ENGINE_TESTS); do \
	    start=$$(date +%s); \
	    prove -f --exec '' $$t || exit 1; \
	    echo "microd: $$t took $$(($$(date +%s) - start)) s"; \
	done

test-progs: $(BUILD)/microd $(TESTS)
	$(MAKE) --no-print-directory BUILD=$(BUILD)/hooks \
	    CPPFLAGS="$(CPPFLAGS) -DMICROD_TEST_HOOKS=1" $(BUILD)/hooks/microd

# microd against nginx-light in one run (see tests/bench.py); never part of
# make check. A second microd without request metrics measures their cost;
# the code before the router and request view (BENCH_BEFORE, built once from
# git), /health against today's; the test-hooks build, a handler that blocks
# the I/O thread against one on the handler pool; the notes resource and the
# TechEmpower test types against pgbench on a throw-away PostgreSQL
# (tests/pg.py).
DEB_BENCH = nginx-light wrk gnuplot-nox python3 util-linux valgrind postgresql
BENCH_BEFORE = a65e14b
# The last commit before the before-handler chain: /health against it.
BENCH_PRECHAIN = 3ba251b
# The last commit before the two wings (src/server/, src/app/).
BENCH_PREWINGS = 5b69d38
# The last commit before the epoll default and its tickers (issue 25).
BENCH_PREGATEWAY = 790ed47
BENCH_COMMIT_before = $(BENCH_BEFORE)
BENCH_COMMIT_prechain = $(BENCH_PRECHAIN)
BENCH_COMMIT_prewings = $(BENCH_PREWINGS)
BENCH_COMMIT_pregateway = $(BENCH_PREGATEWAY)
bench: deps
	@$(call ensure_pkgs,$(DEB_BENCH))
	$(MAKE) --no-print-directory $(BUILD)/microd otlp-deps
	$(MAKE) --no-print-directory BUILD=$(BUILD)/bench/nometrics \
	    CPPFLAGS="$(CPPFLAGS) -DMICROD_REQUEST_METRICS=0" \
	    $(BUILD)/bench/nometrics/microd
	$(MAKE) --no-print-directory BUILD=$(BUILD)/hooks \
	    CPPFLAGS="$(CPPFLAGS) -DMICROD_TEST_HOOKS=1" $(BUILD)/hooks/microd
	$(MAKE) --no-print-directory $(BUILD)/bench/before/microd \
	    $(BUILD)/bench/prechain/microd $(BUILD)/bench/prewings/microd \
	    $(BUILD)/bench/pregateway/microd
	BENCH_BEFORE=$(BENCH_BEFORE) BENCH_PRECHAIN=$(BENCH_PRECHAIN) \
	    BENCH_PREWINGS=$(BENCH_PREWINGS) \
	    BENCH_PREGATEWAY=$(BENCH_PREGATEWAY) python3 tests/bench.py

# git archive, not a worktree: nothing to register or prune, and the commit's
# own Makefile builds it. Its COMMIT is given: git describe would see ours.
$(BUILD)/bench/before/microd $(BUILD)/bench/prechain/microd \
    $(BUILD)/bench/prewings/microd $(BUILD)/bench/pregateway/microd: \
    $(BUILD)/bench/%/microd:
	@if git rev-parse -q --verify '$(BENCH_COMMIT_$*)^{commit}' >/dev/null; then \
	    rm -rf $(@D) && mkdir -p $(@D)/src && \
	    git archive $(BENCH_COMMIT_$*) | tar -x -C $(@D)/src && \
	    $(MAKE) --no-print-directory -C $(@D)/src COMMIT=$(BENCH_COMMIT_$*) \
	        BUILD=$(abspath $(@D)) $(abspath $@); \
	else \
	    echo "microd: commit $(BENCH_COMMIT_$*) is not in this clone;" \
	        "bench skips /health against it" >&2; \
	fi

# tests/otel.py's OTLP receiver (tests/otlp/receiver.js) decodes with the
# OpenTelemetry JavaScript project's protobuf types: its npm packages, at the
# versions tests/otlp/package.json pins, in build/otlp (outside BUILD, so the
# sanitizer builds share it). No lockfile is kept. Debian's nodejs leaves
# npm to a package of its own; other builds of nodejs bring it.
OTLP_DIR = build/otlp
otlp-deps: $(OTLP_DIR)/node_modules/.microd-stamp
$(OTLP_DIR)/node_modules/.microd-stamp: tests/otlp/package.json
	@$(call ensure_pkgs,nodejs)
	@command -v npm >/dev/null 2>&1 || { $(call ensure_pkgs,npm); }
	@mkdir -p $(OTLP_DIR)
	cp tests/otlp/package.json $(OTLP_DIR)/package.json
	cd $(OTLP_DIR) && npm install --no-package-lock --no-audit --no-fund \
	    --ignore-scripts
	touch $@

# Installs missing Debian packages (as root, else through sudo); elsewhere
# prints what to install. tests/deps.py runs it against a fake dpkg-query
# and apt-get.
deps:
	@$(call ensure_pkgs,$(DEB_BUILD))
deps-test:
	@$(call ensure_pkgs,$(DEB_TEST))

define ensure_pkgs
missing=""; \
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
  for p in $(subst |,/,$(1)); do \
    have=""; \
    for a in $$(echo "$$p" | tr / ' '); do \
      dpkg-query -W -f='$${Status}\n' $$a 2>/dev/null | grep -q '^install ok installed' \
        && { have=1; break; }; \
    done; \
    [ -n "$$have" ] || missing="$$missing $${p%%/*}"; \
  done; \
  if [ -n "$$missing" ]; then \
    if [ "$$(id -u)" = 0 ]; then sudo=""; \
    elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
    else echo "microd: please install, as root:$$missing" >&2; exit 1; fi; \
    echo "microd: installing$$missing"; \
    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
      || { $$sudo apt-get update -q && \
           $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; } \
      || exit 1; \
  fi; \
else \
  for p in $(PKGS) $(if $(findstring curl,$(1)),$(TEST_PKGS)); do \
    pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; \
  done; \
  if [ -n "$$missing" ]; then \
    echo "microd: not a Debian system; install the development files (headers + pkg-config) of:$$missing" >&2; \
    echo "microd: plus a C11 compiler, make, pkg-config, and for 'make check' perl's prove, curl, clang-format, clang-tidy, cppcheck" >&2; \
    exit 1; \
  fi; \
fi
endef

$(BUILD)/microd: $(BUILD)/obj/main.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/main.o $(BUILD)/obj/metrics.o $(BUILD)/obj/builtin.o \
    $(BUILD)/obj/export.o: \
    $(BUILD)/version.h
$(BUILD)/obj/%.o: src/%.c Makefile
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# The migrations as one C table of {name, text, length} (src/app/sql.h):
# od gives each file's bytes, so the text is the file's byte for byte and
# its checksum is sha256sum's; a NUL follows. Written on every run and
# replaced only when it changed, as version.h: a .sql added, edited or
# removed rebuilds it, nothing else does. A name is digits, then letters,
# digits, '_', '-' or '.'.
$(BUILD)/gen/app_sql.c: FORCE
	@mkdir -p $(@D)
	@set -e; n=0; { \
	printf '/* Generated by the Makefile from src/app/sql/. */\n'; \
	printf '#include "app/sql.h"\n\n'; \
	for f in $(APP_SQL); do \
	    case "$${f##*/}" in \
	    [0-9]*[!A-Za-z0-9_.-]*|[!0-9]*) \
	        echo "microd: $$f: a migration's name is digits, then" \
	            "letters, digits, _ - or ." >&2; exit 1;; \
	    esac; \
	    printf 'static const unsigned char sql_%d[] = {\n' $$n; \
	    od -An -v -tx1 "$$f" | awk '{ s = "\t"; \
	        for (i = 1; i <= NF; i++) s = s "0x" $$i ", "; print s }'; \
	    printf '\t0x00};\n\n'; n=$$((n + 1)); \
	done; \
	printf 'const struct db_migration app_migrations[] = {\n'; n=0; \
	for f in $(APP_SQL); do \
	    printf '\t{"%s", (const char *)sql_%d, sizeof(sql_%d) - 1},\n' \
	        "$${f##*/}" $$n $$n; n=$$((n + 1)); \
	done; \
	printf '\t{0, 0, 0}};\n\nconst unsigned int app_migrations_count = %d;\n' \
	    $$n; } > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BUILD)/obj/gen/app_sql.o: $(BUILD)/gen/app_sql.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc -MMD -MP -c -o $@ $<

$(BUILD)/tests/unit: $(BUILD)/tests/unit.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# The handlers, through the router without a socket (tests/oneshot.c).
$(BUILD)/tests/handlers: $(BUILD)/tests/handlers.o $(BUILD)/tests/oneshot.o \
    $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# The database pool against a real PostgreSQL (tests/pg.py's).
$(BUILD)/tests/db: $(BUILD)/tests/db.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

# Fuzz targets: replayed over their corpus by driver.c in make check; run
# under libFuzzer by make fuzz.
$(BUILD)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc -MMD -MP -c -o $@ $<

$(BUILD)/tests/fuzz-%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/driver.o \
    $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libfuzzer-%: $(BUILD)/tests/fuzz/%.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-progs: $(FUZZ_TARGETS:%=$(BUILD)/libfuzzer-%)

# The long soak: about a million requests (make check runs 3 s of it).
soak: $(BUILD)/microd
	@$(call ensure_pkgs,wrk valgrind python3)
	SOAK_SECONDS=20 MICROD_BIN=$(BUILD)/microd python3 tests/soak.py

# make fuzz FUZZ_SECONDS=N: each target explores for N seconds with clang's
# libFuzzer + ASan + UBSan, from tests/fuzz/corpus/NAME; what it finds goes to
# build/fuzz/corpus/NAME (copy a crash's input into the repo corpus with its
# fix).
FUZZ_SECONDS ?= 60
fuzz: deps
	@$(call ensure_pkgs,clang libclang-rt-14-dev)
	$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=clang WERROR= \
	    SANITIZE=address,undefined CFLAGS="-O1 -g -fsanitize=fuzzer-no-link" \
	    fuzz-progs
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus/$$t && \
	    $(BUILD)/fuzz/libfuzzer-$$t -max_total_time=$(FUZZ_SECONDS) \
	        -print_final_stats=1 -artifact_prefix=$(BUILD)/fuzz/ \
	        $(BUILD)/fuzz/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/harness.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS) $(LDLIBS)

# version.h changes only when the version or commit does.
$(BUILD)/version.h: FORCE
	@mkdir -p $(@D)
	@printf '#define MICROD_VERSION "%s"\n#define MICROD_COMMIT "%s"\n' \
	    '$(VERSION)' '$(COMMIT)' > $@.tmp; \
	cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

C_FILES = $(wildcard src/*.c src/*.h src/server/*.c src/server/*.h \
          src/db/*.c src/db/*.h src/app/*.c src/app/*.h tests/*.c tests/*.h tests/fuzz/*.c \
          tests/fuzz/*.h)

fmt:
	clang-format -i $(C_FILES)

lint: deps-test $(BUILD)/version.h
	clang-format --dry-run --Werror $(C_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr --std=c11 -I$(BUILD) -Isrc \
	    --suppress=missingIncludeSystem src tests
	clang-tidy --quiet $(filter %.c,$(C_FILES)) -- $(ALL_CFLAGS) -Isrc

# The units' ExecStart= points at the installed binary.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(BUILD)/microd $(DESTDIR)$(BINDIR)/microd
	sed 's|^ExecStart=/usr/local/bin/microd|ExecStart=$(BINDIR)/microd|' \
	    dist/microd.service > $(DESTDIR)$(UNITDIR)/microd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/microd.service
	install -m 644 dist/microd.socket $(DESTDIR)$(UNITDIR)/microd.socket
	install -m 644 dist/microd.8 $(DESTDIR)$(MANDIR)/man8/microd.8

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/microd $(DESTDIR)$(UNITDIR)/microd.service \
	    $(DESTDIR)$(UNITDIR)/microd.socket $(DESTDIR)$(MANDIR)/man8/microd.8

clean:
	rm -rf $(BUILD)

# $(BUILD)/obj/*/*.d: src/server/, src/db/ and src/app/.
-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/obj/*/*.d $(BUILD)/tests/*.d \
    $(BUILD)/tests/fuzz/*.d)
