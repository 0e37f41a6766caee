# jobgate build. `make` builds every program into build/ (build-san/ with SANITIZE=1).
# `make run` starts the whole stack with demo jobs; `make test` runs every test.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=

WARN    = -Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Ishared -Iworker
LDLIBS  = -lhiredis -ljson-c -lcrypto -lpthread -lm
# Debian's interpreter, so that the tests see Debian's python3-* packages (a python3 earlier in
# PATH, such as a pyenv one, would not).
PYTHON ?= /usr/bin/python3

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

WEB_PROGRAMS = submit status logs cache admin
PROGRAMS     = $(addprefix $(BUILD)/jobgate-,$(WEB_PROGRAMS) worker)

SHARED_SRC  = $(wildcard shared/*.c)
SHARED_OBJ  = $(patsubst shared/%.c,$(BUILD)/obj/shared/%.o,$(SHARED_SRC)) $(BUILD)/obj/scripts.o
WORKER_SRC  = $(wildcard worker/*.c)
WORKER_OBJ  = $(patsubst worker/%.c,$(BUILD)/obj/worker/%.o,$(WORKER_SRC))
UNIT_SRC    = $(wildcard tests/unit/*.c)
LUA_SCRIPTS = $(sort $(wildcard redis/*.lua))

.PHONY: all deps run test unit bench install uninstall clean

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

# `make test FILTER="cluster:status worker"`: only the tests whose names hold one of those
# (tests/run.py); JOBGATE_TEST_JOBS=N: N parallel shards (4)
test: deps all
	@JOBGATE_BUILD=$(BUILD) $(PYTHON) tests/run.py $(FILTER)

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

bench: deps all
	@PYTHON=$(PYTHON) sh bench/run.sh

# `make install [PREFIX=/usr/local] [DESTDIR=]`: programs, the spawn-fcgi run script, systemd
# units, nginx/Apache configs, examples (demo jobs, jobgate.env, worker.conf, the demo page)
# and man pages. The shipped files name /usr/local/...; SUBST writes $(PREFIX) there instead.
BINDIR    = $(PREFIX)/bin
LIBDIR    = $(PREFIX)/lib/jobgate
DATADIR   = $(PREFIX)/share/jobgate
UNITDIR   = $(PREFIX)/lib/systemd/system
MANDIR    = $(PREFIX)/share/man
SUBST     = sed -e 's|/usr/local/|$(PREFIX)/|g'
UNITS     = deploy/systemd/jobgate@.service deploy/systemd/jobgate-worker.service
EXAMPLES  = deploy/systemd/jobgate.env deploy/systemd/worker.conf
MAN1      = $(wildcard man/*.1)
MAN7      = $(wildcard man/*.7)
# $(1): source files, $(2): destination directory, $(3): mode
install_subst = for f in $(1); do d="$(2)/$$(basename "$$f")"; \
	    $(SUBST) "$$f" > "$$d" && chmod $(3) "$$d" || exit 1; done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(DATADIR)/nginx $(DESTDIR)$(DATADIR)/apache $(DESTDIR)$(DATADIR)/www \
	    $(DESTDIR)$(DATADIR)/examples/jobs $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(call install_subst,deploy/spawn-fcgi/jobgate-fcgi.sh,$(DESTDIR)$(LIBDIR),755)
	$(call install_subst,$(UNITS),$(DESTDIR)$(UNITDIR),644)
	$(call install_subst,$(wildcard nginx/*.conf),$(DESTDIR)$(DATADIR)/nginx,644)
	$(call install_subst,$(wildcard apache/*.conf),$(DESTDIR)$(DATADIR)/apache,644)
	$(call install_subst,$(EXAMPLES),$(DESTDIR)$(DATADIR)/examples,644)
	install -m 755 $(wildcard deploy/examples/jobs/*.sh) $(DESTDIR)$(DATADIR)/examples/jobs/
	install -d $(DESTDIR)$(DATADIR)/www/dashboard
	install -m 644 $(wildcard deploy/www/*.*) $(DESTDIR)$(DATADIR)/www/
	install -m 644 $(wildcard deploy/www/dashboard/*.*) $(DESTDIR)$(DATADIR)/www/dashboard/
	$(call install_subst,$(MAN1),$(DESTDIR)$(MANDIR)/man1,644)
	$(call install_subst,$(MAN7),$(DESTDIR)$(MANDIR)/man7,644)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGRAMS))) \
	    $(DESTDIR)$(LIBDIR)/jobgate-fcgi.sh $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS))) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(MAN1))) \
	    $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(MAN7)))
	rm -rf $(DESTDIR)$(DATADIR)
	-rmdir $(DESTDIR)$(LIBDIR)

clean:
	rm -rf build build-san

# libFuzzer harnesses: `make fuzz`, and their replay in `make test` (tests/fuzz/README.md)
include tests/fuzz/fuzz.mk
