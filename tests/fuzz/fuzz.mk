# tests/fuzz/fuzz.mk — the fuzz harnesses of tests/fuzz/ (included by the Makefile; see
# tests/fuzz/README.md).
#   make                 also builds $(BUILD)/fuzz-replay/<name>: each harness linked with
#                        replay.c instead of libFuzzer (gcc, the normal or SANITIZE=1 flags);
#                        `make test` runs them on every corpus and crash file (tests/test_fuzz.py)
#   make fuzz            builds build-fuzz/<name> with clang -fsanitize=fuzzer,address,undefined
#                        and runs each for FUZZ_SECONDS (60); a crash is saved to
#                        tests/fuzz/crashes/<name>/ and fails the run

FUZZ_NAMES   = json_check jcs body_fields query percent_decode redis_url worker_lines \
               access_headers cluster_replies fcgi_records
FUZZ_SECONDS ?= 60
FUZZ_REPLAY  = $(addprefix $(BUILD)/fuzz-replay/,$(FUZZ_NAMES))

FUZZ_BUILD   = build-fuzz
FUZZ_CC      = clang
FUZZ_CFLAGS  = -g -O1 -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Ishared -Iworker -Itests/fuzz \
               -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_LIB_SRC = $(SHARED_SRC) worker/lines.c
FUZZ_LIB_OBJ = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC)) $(FUZZ_BUILD)/obj/scripts.o
FUZZ_BINS    = $(addprefix $(FUZZ_BUILD)/,$(FUZZ_NAMES))

.PHONY: fuzz fuzz-clean

all: $(FUZZ_REPLAY)

$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(BUILD)/libjobgate.a \
                        $(BUILD)/obj/worker/lines.o | $(BUILD)/fuzz-replay
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -Itests/fuzz -o $@ tests/fuzz/$*.c tests/fuzz/replay.c \
	    $(BUILD)/obj/worker/lines.o $(BUILD)/libjobgate.a $(LDLIBS)

$(BUILD)/fuzz-replay:
	mkdir -p $@

# ---- make fuzz: clang + libFuzzer (Debian: clang-14, libclang-rt-14-dev) ----

$(FUZZ_BUILD)/obj/%.o: %.c $(wildcard shared/*.h worker/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLANG   $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(FUZZ_BUILD)/scripts.c: $(LUA_SCRIPTS) tools/embed-lua.sh
	@mkdir -p $(dir $@)
	$(Q)sh tools/embed-lua.sh $(LUA_SCRIPTS) > $@

$(FUZZ_BUILD)/obj/scripts.o: $(FUZZ_BUILD)/scripts.c shared/scripts.h
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(FUZZ_BUILD)/libjobgate-fuzz.a: $(FUZZ_LIB_OBJ)
	$(Q)$(AR) rcs $@ $^

$(FUZZ_BUILD)/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libjobgate-fuzz.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
	    $(FUZZ_BUILD)/libjobgate-fuzz.a $(LDLIBS)

# Each harness: new inputs go to build-fuzz/corpus/<name> (the committed seeds in
# tests/fuzz/corpus/<name> are only read); -timeout=10: an input that takes 10 s is a finding.
fuzz: deps $(FUZZ_BINS)
	$(Q)for n in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$n tests/fuzz/crashes/$$n || exit 1; \
	    echo "== fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    log=$(FUZZ_BUILD)/$$n.log; \
	    ASAN_OPTIONS=detect_leaks=1 $(FUZZ_BUILD)/$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=tests/fuzz/crashes/$$n/ \
	        $(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n 2>$$log || \
	        { tail -n 60 $$log; \
	          echo "fuzz: $$n failed: the input is in tests/fuzz/crashes/$$n/"; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' $$log | tr -s ' \n' '  '; \
	    echo; \
	done

clean: fuzz-clean
fuzz-clean:
	rm -rf $(FUZZ_BUILD)
