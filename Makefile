# jobgate build. `make` builds every program into build/ (build-san/ with SANITIZE=1).
# `make run` starts the whole stack with demo jobs; `make test` runs every test.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=

WARN    = -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Ishared -Iworker
LDLIBS  = -lfcgi -lhiredis -ljson-c -lcrypto -lpthread -lm

# `make V=1` shows the commands.
ifneq ($(V),1)
Q = @
endif

ifeq ($(SANITIZE),1)
BUILD   ?= build-san
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD   ?= build
endif

WEB_PROGRAMS = submit status logs cache
PROGRAMS     = $(addprefix $(BUILD)/jobgate-,$(WEB_PROGRAMS) worker)

SHARED_SRC  = $(wildcard shared/*.c)
SHARED_OBJ  = $(patsubst shared/%.c,$(BUILD)/obj/shared/%.o,$(SHARED_SRC)) $(BUILD)/obj/scripts.o
WORKER_SRC  = $(wildcard worker/*.c)
WORKER_OBJ  = $(patsubst worker/%.c,$(BUILD)/obj/worker/%.o,$(WORKER_SRC))
UNIT_SRC    = $(wildcard tests/unit/*.c)
LUA_SCRIPTS = $(sort $(wildcard redis/*.lua))

.PHONY: all deps run test unit bench install clean

all: $(PROGRAMS) $(BUILD)/unit-tests

$(BUILD)/obj/shared/%.o: shared/%.c $(wildcard shared/*.h) | $(BUILD)/obj/shared
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/worker/%.o: worker/%.c $(wildcard shared/*.h worker/*.h) | $(BUILD)/obj/worker
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# Every redis/*.lua is compiled into the programs (see shared/scripts.h).
$(BUILD)/scripts.c: $(LUA_SCRIPTS) tools/embed-lua.sh | $(BUILD)/obj
	$(Q)sh tools/embed-lua.sh $(LUA_SCRIPTS) > $@

$(BUILD)/obj/scripts.o: $(BUILD)/scripts.c shared/scripts.h
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/libjobgate.a: $(SHARED_OBJ)
	$(Q)$(AR) rcs $@ $^

$(BUILD)/jobgate-worker: handlers/worker.c $(WORKER_OBJ) $(BUILD)/libjobgate.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/jobgate-%: handlers/%.c $(BUILD)/libjobgate.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_SRC) $(BUILD)/libjobgate.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -Itests/unit -o $@ $^ $(LDLIBS)

$(BUILD)/obj $(BUILD)/obj/shared $(BUILD)/obj/worker:
	mkdir -p $@

deps:
	@sh deploy/install-deps.sh

run: deps all
	@sh deploy/run-stack.sh

test: deps all
	@JOBGATE_BUILD=$(BUILD) python3 tests/run.py

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

bench: deps all
	@sh bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/jobgate
	install -m 755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	cp -r nginx apache deploy $(DESTDIR)$(PREFIX)/share/jobgate/

clean:
	rm -rf build build-san
