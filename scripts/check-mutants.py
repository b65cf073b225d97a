#!/usr/bin/python3
"""scripts/check-mutants.py: every check must be able to fail.

Applies small deliberate breakages of the series ("mutants") to the QEMU
tree one at a time, rebuilds in a build directory of its own
(build/qemu/build-mut, configured like build/qemu/build, with ccache), runs
the tests that should notice, and restores the tree.  Prints a table
mutant -> killed by; exits non-zero when any mutant survives, when the
unmutated build fails a test (a control), or when a mutant no longer
applies (the code it breaks changed: update the table).

  scripts/check-mutants.py              all mutants
  scripts/check-mutants.py -k event     only mutants whose name contains 'event'

Don't build in build/qemu while this runs: it edits the tree's sources.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TREE = os.environ.get("QGA_TREE", os.path.join(TOP, "build", "qemu"))
MUT = os.path.join(TREE, "build-mut")
QTEST = "tests/qtest/qga-passthrough-test"
QMP_TEST = "tests/qtest/qmp-test"
UNITS = ["check-qjson", "check-qdict", "test-char"]
TARGETS = ["qemu-system-x86_64", QTEST, QMP_TEST] + ["tests/unit/" + u
                                                    for u in UNITS]

QGA = "chardev/char-qga.c"

# name, file, text, replacement, tests: "q:PATH" is a qga-passthrough-test
# path, "m:PATH" a qmp-test path, "u:NAME" a unit test of UNITS, "e:NAME" a
# check of tests/run.py (end to end, with the tiny guest)
MUTANTS = [
    ("no guest-sync when the port opens", QGA,
     "        qga_start_sync(s, QGA_SYNC_RETRY_MIN_MS,\n"
     "                       GUEST_AGENT_UNAVAILABLE_REASON_PORT_CLOSED);\n"
     "        return;",
     "        s->state = QGA_READY;\n        return;",
     # the qtest's UART is open from the start, and the reset at startup
     # syncs: only a guest that opens the port later notices
     ["e:test_qmp_agent_current"]),
    ("no id matching", QGA,
     "        if (!idnum || !qnum_get_try_int(idnum, &n) || n != req->id) {",
     "        if (idnum && 0) {", ["q:stale-reply"]),
    ("id-less success replies accepted", QGA,
     "    } else if (!error) {\n        /* The agent echoes",
     "    } else if (0) {\n        /* The agent echoes", ["q:no-id"]),
    ("nesting cap off", QGA,
     "        if (depth >= QGA_REPLY_NESTING_MAX) {",
     "        if (depth >= 100000) {", ["q:nesting"]),
    ("max-reply-size not enforced", QGA,
     "        limit = s->max_reply_size;", "        limit = UINT64_MAX;",
     ["q:oversize"]),
    ("sync replies of any length", QGA,
     "#define QGA_SYNC_REPLY_MAX 256", "#define QGA_SYNC_REPLY_MAX 100000",
     ["q:sync-reply-bounded"]),
    ("output while idle parsed as a reply", QGA,
     "        } else {\n            trace_qga_drop(\"nothing is in flight\");\n"
     "            qga_idle_output(s);\n        }",
     "        } else {\n            qga_handle_reply(s, json, after_delim);\n"
     "        }", ["q:unsolicited-reply"]),
    # the marshaller is QAPI's own: break its check of the arguments
    ("unexpected arguments forwarded", "scripts/qapi/commands.py",
     "        ok = visit_check_struct(v, errp);",
     "        ok = true;", ["q:invalid-args"]),
    ("reply not checked against the schema", "scripts/qapi/qga_proxy.py",
     "        if (!visit_type_%(ret_c_name)s(fwd_v, NULL, &fwd_ret, &fwd_err)) {",
     "        visit_type_%(ret_c_name)s(fwd_v, NULL, &fwd_ret, NULL);\n"
     "        if (0) {", ["q:invalid-reply"]),
    ("non-finite numbers passed on", QGA,
     "        if (!isfinite(qnum_get_double(num))) {",
     "        if (0) {", ["q:non-finite", "e:test_hostile_nonfinite"]),
    ("guest picks the error class", QGA,
     'if (class && !strcmp(class, "CommandNotFound")) {',
     'if (class && strcmp(class, "QgaCommandFailed")) {', ["q:agent-error"]),
    ("monitor parking off", "monitor/qmp.c",
     "        if (qmp_mon->concurrent) {",
     "        if (false && qmp_mon->concurrent) {",
     ["q:two-monitors-oob"]),
    ("disconnect does not abandon the concurrent command", "monitor/qmp.c",
     "    if (mon->concurrent) {\n"
     "        /* Stop waiting for the client's concurrent command */",
     "    if (0) {\n"
     "        /* Stop waiting for the client's concurrent command */",
     ["q:orphaned"]),
    ("concurrent commands detour through iohandler_ctx", "qapi/qmp-dispatch.c",
     "        if (qemu_in_coroutine() && !(cmd->options & QCO_CONCURRENT)) {\n"
     "            /*\n"
     "             * Yield and reschedule",
     "        if (qemu_in_coroutine()) {\n"
     "            /*\n"
     "             * Yield and reschedule",
     ["e:test_guest_shutdown_through_qmp"]),
    ("abandoned requests sent anyway", QGA,
     "        if (req->cancelled && req->cancelled(req->opaque)) {",
     "        if (0) {", ["q:orphaned"]),
    ("timeouts never fire", QGA,
     "    timer_mod(req->timer,\n"
     "              qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + req->timeout_ms);",
     "    timer_del(req->timer);", ["q:timeout"]),
    ("state event not throttled", "monitor/monitor.c",
     "    [QAPI_EVENT_GUEST_AGENT_CHANGE] = { 1000 * SCALE_MS },", "",
     ["q:event-rate"]),
    ("agent events not throttled", "monitor/monitor.c",
     "    [QAPI_EVENT_GUEST_AGENT_EVENT] = { 1000 * SCALE_MS },", "",
     ["q:agent-events"]),
    ("agent events taken for replies", QGA,
     "    if (qdict_haskey(rsp, \"event\")) {\n        qga_handle_event(s, rsp);",
     "    if (0) {\n        qga_handle_event(s, rsp);", ["q:agent-events"]),
    ("timeouts always say 'may have executed'", QGA,
     "    return req->delivered ? ", "    return 1 ? ",
     ["q:timeout", "e:test_timeout_says_whether_sent"]),
    ("a host reset counts as evidence", QGA,
     "    if (cause == SHUTDOWN_CAUSE_GUEST_RESET) {\n"
     "        qga_no_response_done(s);",
     "    if (1) {\n        qga_no_response_done(s);",
     ["q:no-response-evidence", "e:test_shutdown_host_reset"]),
    ("no-reply commands done on port close", QGA,
     "        QgaRequest *req = s->inflight;\n\n        s->inflight = NULL;\n"
     "        qga_fail_all(s, why);\n        s->inflight = req;\n        return;",
     "        qga_request_finish(s->inflight, NULL, NULL);",
     ["e:test_shutdown_agent_killed"]),
    ("no input budget", QGA,
     "    len = MIN(len, s->input_budget);\n    s->input_budget -= len;", "",
     ["e:test_hostile_urandom_flood"]),
    ("pending requests wait for a dead guest", QGA,
     "    if (state == RUN_STATE_SHUTDOWN || state == RUN_STATE_GUEST_PANICKED) {",
     "    if (0) {", ["q:guest-panicked"]),
    ("no resync when a panicked guest resumes", QGA,
     "        if (s->guest_down) {\n            /* Resumed without a reset",
     "        if (0) {\n            /* Resumed without a reset",
     ["q:guest-panicked"]),
    ("late replies not counted", QGA,
     "                s->stale_output = true;\n                s->stale_replies++;",
     "                s->stale_output = true;", ["q:late-reply"]),
    # the fsfreeze guard, the host policy and info guest-agent
    ("guard: disconnects not notified", "monitor/qmp.c",
     "    if (mon->client) {\n"
     "        /* We may be in the monitor I/O thread; notify in the main loop */",
     "    if (0) {\n"
     "        /* We may be in the monitor I/O thread; notify in the main loop */",
     ["q:fsfreeze-client-gone", "e:test_fsfreeze_client_killed"]),
    ("guard: freeze owner not recorded", QGA,
     "                                                              : req->client;",
     "                                                              : 0;",
     ["q:fsfreeze-client-gone"]),
    ("guard: freeze-timeout-ms ignored", QGA,
     "        if (s->freeze_timeout_ms) {\n"
     "            timer_mod(s->freeze_timer",
     "        if (0) {\n"
     "            timer_mod(s->freeze_timer",
     ["q:fsfreeze-timeout", "e:test_fsfreeze_timeout"]),
    ("guard: a freeze nobody got the reply of is kept", QGA,
     "        if (!owner) {\n"
     "            /* Nobody got the reply",
     "        if (0) {\n"
     "            /* Nobody got the reply",
     ["q:fsfreeze-others"]),
    ("guard: failed thaws not retried", QGA,
     "    if (s->thaw_wanted) {\n"
     "        trace_qga_fsfreeze_thaw_failed",
     "    if (0) {\n"
     "        trace_qga_fsfreeze_thaw_failed",
     ["q:fsfreeze-thaw-retry"]),
    ("guard: no freeze check after a resync", QGA,
     "    } else if (s->freeze != GUEST_AGENT_FSFREEZE_STATUS_THAWED) {\n"
     "        qga_fsfreeze_check(s);",
     "    } else if (0) {\n"
     "        qga_fsfreeze_check(s);",
     ["q:fsfreeze-check"]),
    ("guard: no thaw retry when the VM runs again", QGA,
     "        qga_fsfreeze_retry_now(s);\n        qemu_bh_schedule(s->bh);",
     "        qemu_bh_schedule(s->bh);", ["q:fsfreeze-vm-stopped"]),
    ("policy: not enforced", QGA,
     "    if (s && !qga_policy_allows(s, command, &err)) {",
     "    if (s && 0 && !qga_policy_allows(s, command, &err)) {",
     ["q:policy", "e:test_policy_real_agent"]),
    ("hmp: info guest-agent misreports the sync", "chardev/char-hmp-cmds.c",
     'info->synced ? "in sync" : "not in sync"',
     'info->synced ? "not in sync" : "in sync"', ["q:hmp-info"]),
    ("perf: the rest of a piece is dropped after a stale reply", QGA,
     "        if (s->discard || (s->emitted && (!req || s->inflight != req))) {",
     "        if (s->discard || (s->emitted && (!req || req->id >= 0))) {",
     ["e:test_hostile_malformed_replies"]),
    ("perf: plain runs take quotes", "qobject/json-lexer.c",
     "    bad = (v < 0x20) | (v == 0x7f) | (v == '\"') | (v == '\\\\')\n",
     "    bad = (v < 0x20) | (v == 0x7f) | (v == '\\\\')\n",
     ["u:check-qjson"]),
    ("perf: plain runs take '%' (interpolation)", "qobject/json-lexer.c",
     "        | (v == '\\'') | (v == '%');\n", "        | (v == '\\'');\n",
     ["u:check-qjson"]),
    ("perf: a reset parser keeps the tokens of a message",
     "qobject/json-streamer.c",
     "    json_lexer_reset(&parser->lexer, TOKEN_BUFFER_KEEP);\n"
     "    parser->brace_count = 0;\n"
     "    parser->bracket_count = 0;\n"
     "    json_message_free_tokens(parser);\n",
     "    json_lexer_reset(&parser->lexer, TOKEN_BUFFER_KEEP);\n"
     "    parser->brace_count = 0;\n"
     "    parser->bracket_count = 0;\n",
     ["u:check-qjson"]),
    ("perf: a reset parser keeps a large token's buffer",
     "qobject/json-lexer.c",
     "    if (lexer->token->allocated_len > keep) {", "    if (0) {",
     ["u:check-qjson"]),
    ("perf: the channel's parser is not reset", QGA,
     "    json_message_parser_reset(&s->parser);\n    s->reply_bytes = 0;",
     "    s->reply_bytes = 0;", ["q:sync-reply-bounded"]),
    ("perf: guest-info's command list compared by position only", QGA,
     "        if (*tail && !strcmp((*tail)->value, name)) {",
     "        if (*tail) {", ["q:info"]),
    ("perf: guest-info's command list keeps entries past its end", QGA,
     "    qapi_free_strList(*tail);\n    *tail = NULL;\n}\n", "}\n",
     ["q:info"]),
    ("perf: emptied QDict buckets stay marked in use", "qobject/qdict.c",
     "                clear_bit(bucket, qdict->index->used);",
     "                (void)bucket;",
     ["u:check-qdict"]),
    ("hostile: large QDicts find keys along their bucket", "qobject/qdict.c",
     "        return g_tree_lookup(qdict->index->keys, key);",
     "        (void)0;",
     ["e:test_hostile_colliding_keys"]),
    ("hostile: deleted keys stay in a large QDict's tree", "qobject/qdict.c",
     "            g_tree_remove(qdict->index->keys, entry->key);",
     "            (void)0;",
     ["u:check-qdict"]),
    ("perf: QDict index points at the last entry of a bucket",
     "qobject/qdict.c",
     "    QTAILQ_FOREACH_REVERSE(entry, &qdict->entries, next) {",
     "    QTAILQ_FOREACH(entry, &qdict->entries, next) {",
     ["u:check-qdict"]),
    ("other threads write to a new client before its frontend is told",
     "chardev/char-socket.c",
     "        (!s->opening || qemu_thread_is_self(&s->opening_thread));",
     "        (!s->opening || true);",
     ["u:test-char", "e:test_qmp_greeting_first_on_reconnect"]),
    ("perf: a plain string token becomes a string with its quote",
     "qobject/json-parser.c",
     "        return qstring_from_len(ptr, run);",
     "        return qstring_from_len(ptr, limit - ptr);",
     ["u:check-qjson"]),
    ("perf: a response is handed over while output is queued",
     "monitor/monitor.c",
     "    if (mon->outbuf->len) {\n"
     "        g_string_append_len(mon->outbuf, out->str, out->len);",
     "    if (0) {\n"
     "        g_string_append_len(mon->outbuf, out->str, out->len);",
     ["m:queued-output"]),
    ("perf: QMP handles what it read after suspending", "monitor/qmp.c",
     "    if (qatomic_read(&mon->common.suspend_cnt) ||\n"
     "        !g_queue_is_empty(mon->pending)) {",
     "    if (0) {", ["q:pipelined"]),
    ("perf: QMP keeps what a client sent before it disconnected",
     "monitor/qmp.c",
     "        monitor_qmp_drop_pending(mon);\n"
     "        monitor_qmp_cleanup_queue_and_resume(mon);",
     "        monitor_qmp_cleanup_queue_and_resume(mon);",
     ["q:pipelined-orphaned"]),
    ("clients: reply size as QMP sends it not checked", QGA,
     "    if (size > s->max_reply_size) {", "    if (0) {",
     ["q:reencoded-size", "e:test_hostile_large_replies"]),
    ("clients: escapes counted as one byte", "qobject/json-writer.c",
     "                size += 6;              /* \\uXXXX, also for U+FFFD */",
     "                size += 1;",
     ["q:reencoded-size", "u:check-qjson"]),
    ("clients: default max-reply-size 32 MiB", "include/chardev/char-qga.h",
     "#define QGA_CHANNEL_MAX_REPLY_SIZE_DEFAULT  (8 * MiB)",
     "#define QGA_CHANNEL_MAX_REPLY_SIZE_DEFAULT  (32 * MiB)",
     ["e:test_qmpclient_largest_responses"]),
    ("clients: qemu-ga-client syncs through QMP",
     "python/qemu/utils/qemu_ga_client.py",
     "        if self.qmp:\n"
     "            # QEMU keeps its channel to the agent in sync itself\n"
     "            return\n", "",
     ["e:test_qga_client_over_qmp"]),
]


def env():
    e = dict(os.environ)
    e.update({
        "PATH": "/usr/lib/ccache:" + e["PATH"],
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_DIR": e.get("CCACHE_DIR", os.path.join(
            os.path.expanduser("~"), ".cache", "qga-passthrough", "ccache")),
        "CCACHE_BASEDIR": TREE,
        "CCACHE_SLOPPINESS": "time_macros,include_file_mtime,"
                             "include_file_ctime",
        "QTEST_QEMU_BINARY": "./qemu-system-x86_64",
        "QGA_QEMU": os.path.join(MUT, "qemu-system-x86_64"),
        # a mutant that never makes the agent available fails sooner
        "QGA_BOOT_TIMEOUT": "30",
    })
    return e


def configure():
    """build-mut: the configuration of scripts/build.sh, built from the
    same ccache (its paths relative to the tree are the same)."""
    subprocess.run([os.path.join(TOP, "scripts", "build.sh"), TREE],
                   env=dict(env(), QGA_BUILD_DIR=MUT, QGA_NINJA_TARGETS=" "
                            .join(TARGETS)), check=True,
                   stdout=subprocess.DEVNULL)


def build():
    r = subprocess.run(["ninja"] + TARGETS, cwd=MUT, env=env(), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       check=False)
    return r.returncode == 0, r.stdout[-3000:]


def run_test(test):
    """True when @test passes on the binary in build-mut."""
    kind, name = test.split(":", 1)
    if kind == "q":
        cmd = ["timeout", "60", os.path.join(MUT, QTEST), "-p",
               "/x86_64/qga-passthrough/" + name]
        cwd = MUT
    elif kind == "m":
        cmd = ["timeout", "60", os.path.join(MUT, QMP_TEST), "-p",
               "/x86_64/qmp/" + name]
        cwd = MUT
    elif kind == "u":
        cmd = ["timeout", "60", os.path.join(MUT, "tests", "unit", name)]
        cwd = MUT
    else:
        cmd = ["timeout", "300", "/usr/bin/python3",
               os.path.join(TOP, "tests", "run.py"), "-k", name]
        cwd = TOP
    # A mutant may make a test hang until `timeout` kills it, which
    # leaves no chance to clean up: give each run a TMPDIR of its own
    # (g_dir_make_tmp() and the harness's tempfile use it) and remove it
    tmp = tempfile.mkdtemp(prefix="qga-mutant-")
    try:
        r = subprocess.run(cmd, cwd=cwd, env=dict(env(), TMPDIR=tmp),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if kind == "e" and "0 passed" in r.stdout.splitlines()[-1:]:
        return False
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only mutants whose name has this")
    opts = ap.parse_args()
    mutants = [m for m in MUTANTS if opts.k in m[0]]
    if not mutants:
        print("check-mutants: no mutant selected")
        return 1
    dirty = subprocess.run(["git", "-C", TREE, "status", "--porcelain",
                            "--untracked-files=no"], text=True, check=True,
                           stdout=subprocess.PIPE).stdout
    if dirty:
        print("check-mutants: %s has uncommitted changes:\n%s" % (TREE, dirty))
        return 1
    t0 = time.monotonic()
    configure()
    bad = []
    # control: the unmutated build passes every test the mutants use
    tests = sorted({t for m in mutants for t in m[4]})
    for t in tests:
        if not run_test(t):
            print("check-mutants: control failed: %s fails without a "
                  "mutant" % t)
            bad.append("control " + t)
    rows = []
    for name, path, old, new, mtests in mutants:
        full = os.path.join(TREE, path)
        with open(full, encoding="utf-8") as f:
            orig = f.read()
        if orig.count(old) != 1:
            rows.append((name, "DOES NOT APPLY (update the table)"))
            bad.append(name)
            continue
        t1 = time.monotonic()
        try:
            with open(full, "w", encoding="utf-8") as f:
                f.write(orig.replace(old, new))
            ok, log = build()
            if not ok:
                rows.append((name, "BUILD FAILED"))
                print(log)
                bad.append(name)
                continue
            killed = [t for t in mtests if not run_test(t)]
        finally:
            with open(full, "w", encoding="utf-8") as f:
                f.write(orig)
        rows.append((name, ("killed by " + ", ".join(killed)) if killed
                     else "SURVIVED"))
        if not killed:
            bad.append(name)
        print("%-45s %s (%.0f s)" % (rows[-1] + (time.monotonic() - t1,)),
              flush=True)
    build()
    print("\n| mutant | result |\n|---|---|")
    for name, result in rows:
        print("| %s | %s |" % (name, result))
    killed = sum(result.startswith("killed by") for _, result in rows)
    print("\n%d mutants in %.0f s; a mutant passes when the tests kill it"
          % (len(rows), time.monotonic() - t0))
    print("check-mutants: %d passed, %d failed" % (killed, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
