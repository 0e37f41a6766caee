"""The fuzz harnesses of tests/fuzz/ replayed (tests/fuzz/README.md): each harness, built by
`make` with a small replay main instead of libFuzzer ($JOBGATE_BUILD/fuzz-replay/<name>), runs
on every committed seed (tests/fuzz/corpus/<name>/) and every committed crash input
(tests/fuzz/crashes/<name>/). A property that breaks aborts; a sanitized build also fails on
any memory or undefined-behaviour error. One test per harness."""

import os
import subprocess

import harness
from harness import check, eq

FUZZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")


def _inputs(d):
    if not os.path.isdir(d):
        return 0
    return sum(1 for f in os.listdir(d) if not f.startswith(".")
               and os.path.isfile(os.path.join(d, f)))


def _replay(name):
    binary = os.path.join(harness.BUILD, "fuzz-replay", name)
    check(os.access(binary, os.X_OK), "%s built (make)" % binary, "missing")
    corpus = os.path.join(FUZZ, "corpus", name)
    crashes = os.path.join(FUZZ, "crashes", name)
    want = _inputs(corpus) + _inputs(crashes)
    check(_inputs(corpus) > 0, "a committed seed corpus in %s" % corpus, "none")
    env = dict(os.environ)
    env.update(harness.SAN_ENV)
    p = subprocess.run([binary, corpus, crashes], capture_output=True, timeout=100, env=env)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    lines = [l for l in err.splitlines() if l.startswith("replay: ")]
    last = lines[-1][8:] if lines else "(none)"
    check(p.returncode == 0, "%s: every input keeps its properties (exit 0); the last input "
          "replayed was %s" % (name, last),
          "exit %d:\n%s" % (p.returncode, "\n".join(l for l in err.splitlines()
                                                      if not l.startswith("replay: "))[-3000:]))
    hits = [pat for pat in harness.SAN_PATTERNS if pat in err]
    eq(hits, [], "%s: sanitizer reports while replaying (last input %s)" % (name, last))
    eq(out.strip(), "replayed %d inputs" % want, "%s: inputs replayed" % name)


def test_json_checker_keeps_its_properties_on_every_corpus_and_crash_input():
    _replay("json_check")


def test_jcs_output_rechecks_and_is_its_own_canonical_form_on_every_input():
    _replay("jcs")


def test_submit_and_cache_body_reader_answers_json_errors_on_every_input():
    _replay("body_fields")


def test_query_strings_and_cursors_are_read_safely_on_every_input():
    _replay("query")


def test_percent_decoding_stays_in_bounds_on_every_input():
    _replay("percent_decode")


def test_redis_url_parser_never_shows_the_password_on_every_input():
    _replay("redis_url")


def test_worker_output_lines_stay_utf8_and_under_16_kib_on_every_input():
    _replay("worker_lines")


def test_authorization_and_forwarded_for_headers_are_read_safely_on_every_input():
    _replay("access_headers")


def test_cluster_redirections_slot_maps_and_command_keys_are_read_safely_on_every_input():
    _replay("cluster_replies")


def test_fastcgi_records_give_the_same_request_however_they_are_cut_on_every_input():
    _replay("fcgi_records")
