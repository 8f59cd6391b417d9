# ClusterStorage: build/libcs.so (the preloaded library), build/cs-replicate
# (the per-node daemon and admin tool), and the tests.
#
#   make            build everything with -Wall -Wextra -Werror
#   make test       unit + preload + integration tests (servers started by tests/run)
#   make asan       the same build under AddressSanitizer + UBSan, in build-asan/
#   make bench      benchmarks (bench/run), results in bench/RESULTS.md
#   make install    PREFIX=/usr/local DESTDIR=

B        ?= build
PREFIX   ?= /usr/local
CC       ?= cc
PKGS     := libmemcached libmariadb libcurl libcrypto
OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE -U_FORTIFY_SOURCE $(OPT) -g -Wall -Wextra -Werror \
            -fPIC -fvisibility=hidden -ftls-model=initial-exec -Iinclude $(SAN) \
            $(shell pkg-config --cflags $(PKGS))
LDFLAGS  += $(SAN)
DEPLIBS  := $(shell pkg-config --libs $(PKGS)) -lpthread -ldl
# The preloaded library links only libc: libcs/dyn.c loads libcrypto, the
# MariaDB client, libmemcached and libcurl at first use.
SOLIBS   := -lpthread -ldl

CORE_SRC := $(wildcard libcs/*.c)
PRE_SRC  := $(wildcard preload/*.c)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
PTEST_SRC:= $(wildcard tests/preload/*.c)

CORE_OBJ := $(CORE_SRC:%.c=$(B)/%.o)
PRE_OBJ  := $(PRE_SRC:%.c=$(B)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(B)/%.o)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
PTESTS   := $(PTEST_SRC:tests/preload/%.c=$(B)/tests/preload/%)

all: $(B)/libcs.so $(B)/cs-replicate $(UNITS) $(PTESTS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/libcs.a: $(CORE_OBJ)
	ar rcs $@ $^

# The preloaded library: core + interposition, only the wrappers exported.
$(B)/libcs.so: $(CORE_OBJ) $(PRE_OBJ)
	$(CC) -shared -Wl,-z,defs -Wl,-z,now $(LDFLAGS) -o $@ $^ $(SOLIBS)

$(B)/cs-replicate: $(TOOL_OBJ) $(B)/libcs.a
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(B)/libcs.a $(DEPLIBS) $(shell pkg-config --libs libmicrohttpd)

$(B)/tools/%.o: CFLAGS += $(shell pkg-config --cflags libmicrohttpd)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/libcs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libcs.a $(DEPLIBS) -lcmocka

# Preload test programs are ordinary programs: they know nothing of libcs.
$(B)/tests/preload/%: tests/preload/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $(SAN) $(PTEST_CFLAGS_$*) -o $@ $<

# fortify.c exists to be built with _FORTIFY_SOURCE=2 (open -> __open_2).
PTEST_CFLAGS_fortify := -D_FORTIFY_SOURCE=2

test: all
	tests/run

unit: $(UNITS)
	tests/run unit

asan:
	$(MAKE) B=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

asan-test: asan
	B=build-asan tests/run

bench: all
	bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/clusterstorage
	install -m 0755 $(B)/libcs.so $(DESTDIR)$(PREFIX)/lib/libcs.so
	install -m 0755 $(B)/cs-replicate $(DESTDIR)$(PREFIX)/bin/cs-replicate
	install -m 0644 sql/schema.sql $(DESTDIR)$(PREFIX)/share/clusterstorage/schema.sql

clean:
	rm -rf build build-asan

.PHONY: all test unit asan asan-test bench install clean
.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
