# ClusterStorage: build/libcs.so (the preloaded library), build/cs-replicate
# (the node agent and admin tool), and the tests.
#
#   make            build everything with -Wall -Wextra -Werror
#   make test       unit + preload + integration tests (servers started by
#                   tests/run), of this build and of the sanitizer build
#   make plain-test the same, this build only
#   make asan       the same build under AddressSanitizer + UBSan, in build-asan/
#   make asan-test  the tests of the sanitizer build only
#   make fuzz       libFuzzer harnesses (tests/fuzz) built with clang in
#                   build-fuzz/, each run FUZZ_SECONDS (default 10)
#   make bench      benchmarks (bench/run), results in bench/RESULTS.md
#   make install    PREFIX=/usr/local DESTDIR= UNITDIR= (see install below)
#   make uninstall  the same variables
#
# What runs inside host processes and what runs in the agent are apart, in
# the tree and in the link: libcs.so is libcs/ (the core both sides share)
# and preload/, and links only libc; agent/ and tools/ link only into
# cs-replicate, with the registry, peer and crypto libraries.

B        ?= build
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
LIBDIR   ?= $(PREFIX)/lib/clusterstorage
DATADIR  ?= $(PREFIX)/share/clusterstorage
MANDIR   ?= $(PREFIX)/share/man
UNITDIR  ?=
CC       ?= cc
PKGS     := libmemcached libmariadb libcurl libcrypto libmicrohttpd
OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE -U_FORTIFY_SOURCE $(OPT) -g -Wall -Wextra -Werror \
            -fPIC -fvisibility=hidden -ftls-model=initial-exec -ffunction-sections \
            -fdata-sections -Iinclude $(SAN)
AGENT_CFLAGS := -Iagent $(shell pkg-config --cflags $(PKGS))
LDFLAGS  += $(SAN)
DEPLIBS  := $(shell pkg-config --libs $(PKGS)) -lpthread

CORE_SRC := $(wildcard libcs/*.c)
PRE_SRC  := $(wildcard preload/*.c)
AGENT_SRC:= $(wildcard agent/*.c)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
PTEST_SRC:= $(wildcard tests/preload/*.c)

CORE_OBJ := $(CORE_SRC:%.c=$(B)/%.o)
PRE_OBJ  := $(PRE_SRC:%.c=$(B)/%.o)
AGENT_OBJ:= $(AGENT_SRC:%.c=$(B)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
PTESTS   := $(PTEST_SRC:tests/preload/%.c=$(B)/tests/preload/%)

TOOLS_T  := $(B)/tests/mkindex $(B)/tests/peer_client

all: $(B)/libcs.so $(B)/cs-replicate $(UNITS) $(PTESTS) $(TOOLS_T)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/agent/%.o $(B)/tools/%.o $(B)/tests/unit/%.o $(TOOLS_T:=.o): CFLAGS += $(AGENT_CFLAGS)

$(B)/libcs.a: $(CORE_OBJ)
	ar rcs $@ $^

$(B)/libagent.a: $(AGENT_OBJ)
	ar rcs $@ $^

# The preloaded library: the core and the interposition layer, libc only,
# only the wrappers exported.  --gc-sections leaves out what the wrappers
# never reach: the core's helpers that only cs-replicate calls (reading
# journals, the agent's log file, hex) are in libcs.a, not in host processes.
$(B)/libcs.so: $(CORE_OBJ) $(PRE_OBJ)
	$(CC) -shared -Wl,-z,defs -Wl,-z,now -Wl,--gc-sections $(LDFLAGS) -o $@ $^

$(B)/cs-replicate: $(TOOL_OBJ) $(B)/libagent.a $(B)/libcs.a
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(B)/libagent.a $(B)/libcs.a $(DEPLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/libagent.a $(B)/libcs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libagent.a $(B)/libcs.a $(DEPLIBS) -lcmocka

# Test helpers built on the agent's modules: mkindex writes an index file
# for tests that have no agent, peer_client calls the peer client once.
$(TOOLS_T): %: %.o $(B)/libagent.a $(B)/libcs.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libagent.a $(B)/libcs.a $(DEPLIBS)

# Preload test programs are ordinary programs: they know nothing of libcs.
$(B)/tests/preload/%: tests/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $(SAN) $(PTEST_CFLAGS_$*) -o $@ $<

# fortify.c exists to be built with _FORTIFY_SOURCE=2 (open -> __open_2).
PTEST_CFLAGS_fortify := -D_FORTIFY_SOURCE=2

test: all asan
	tests/run

unit: $(UNITS)
	tests/run unit

asan:
	$(MAKE) B=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

plain-test: all
	tests/run plain

asan-test: all asan
	tests/run asan

# The parsers under libFuzzer: the core and the agent built again with
# clang, coverage and the sanitizers in build-fuzz/, one harness per parser
# linked as the unit tests are.  tests/fuzz/run runs each from its seeds
# and ends with "N passed, N failed".
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS  := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
FUZZ_SECONDS ?= 10

$(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(B)/libagent.a $(B)/libcs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AGENT_CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libagent.a $(B)/libcs.a \
		$(DEPLIBS)

fuzzers: $(FUZZERS)

fuzz:
	$(MAKE) B=build-fuzz CC=clang OPT=-O1 SAN="$(FUZZ_SAN)" fuzzers
	B=build-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run

bench: all
	bench/run

# install: the two programs, the schema and its migrations, the man pages
# (those man/ has), and with UNITDIR (e.g. /lib/systemd/system) the agent's
# unit and the web servers' drop-ins.  libcs.so goes in a directory of its
# own, LIBDIR: it is no library programs link against, only the absolute
# path hosts name in LD_PRELOAD, and it must not meet ldconfig or another
# libcs.  dist/'s unit names /usr/bin/cs-replicate: rewritten for BINDIR.
MAN_PAGES := $(wildcard man/*.1 man/*.7)
DROPINS   := $(wildcard dist/systemd/*.service.d/clusterstorage.conf)

install: $(B)/libcs.so $(B)/cs-replicate
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DATADIR)/migrations
	install -m 0644 $(B)/libcs.so $(DESTDIR)$(LIBDIR)/libcs.so
	install -m 0755 $(B)/cs-replicate $(DESTDIR)$(BINDIR)/cs-replicate
	install -m 0644 sql/schema.sql $(DESTDIR)$(DATADIR)/schema.sql
	install -m 0644 sql/migrations/*.sql $(DESTDIR)$(DATADIR)/migrations/
	for m in $(MAN_PAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s && \
		install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; \
	done
ifneq ($(UNITDIR),)
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/cs-replicate|$(BINDIR)/cs-replicate|' dist/systemd/clusterstorage.service \
		>$(DESTDIR)$(UNITDIR)/clusterstorage.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/clusterstorage.service
	for d in $(DROPINS); do \
		u=$$(basename $$(dirname $$d)); install -d $(DESTDIR)$(UNITDIR)/$$u && \
		install -m 0644 $$d $(DESTDIR)$(UNITDIR)/$$u/ || exit 1; \
	done
endif

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cs-replicate $(DESTDIR)$(LIBDIR)/libcs.so
	rm -rf $(DESTDIR)$(DATADIR)
	for m in $(MAN_PAGES); do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$${m#man/}; done
	-rmdir $(DESTDIR)$(LIBDIR)
ifneq ($(UNITDIR),)
	rm -f $(DESTDIR)$(UNITDIR)/clusterstorage.service
	for d in $(DROPINS); do \
		u=$$(basename $$(dirname $$d)); rm -f $(DESTDIR)$(UNITDIR)/$$u/clusterstorage.conf; \
		rmdir $(DESTDIR)$(UNITDIR)/$$u 2>/dev/null || true; \
	done
endif

clean:
	rm -rf build build-asan build-fuzz

.PHONY: all test plain-test unit asan asan-test fuzz fuzzers bench install uninstall clean
.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
