#!/usr/bin/python3
"""scripts/check-sanitizers.py: the series' tests against QEMU built with
AddressSanitizer and UndefinedBehaviorSanitizer.

Runs, with build/qemu/build-san (scripts/build.sh, QGA_FLAVOUR=sanitizers)
in place of build/qemu/build:
  - QEMU's tests that the series touches (tests/test_qemu.py: the
    qga-passthrough qtest with the fake and the real agent, qmp-test,
    qmp-cmd-test, test-qmp-cmds, test-qobject-input-visitor, check-qjson,
    test-char, test-qga, ...);
  - the fuzz target's regression inputs and seeds (tests/test_fuzz.py; the
    fuzz target is always built with ASan + UBSan);
  - the end-to-end suites that start QEMU with the tiny guest: real qemu-ga,
    concurrent clients and timeouts (test_passthrough, test_guest_commands),
    the hostile guests (test_hostile), and migration, disconnects, quit and
    SIGTERM, chardev and virtserialport removal with requests pending
    (test_lifecycle).
Every sanitizer report of every process is written to a log file of its own
(ASAN_OPTIONS/UBSAN_OPTIONS log_path); the run fails when a test fails or
when any report was written, and prints the reports.

Leak detection is on for the fuzz target, where each input must give back
all its memory, and off for QEMU itself: QEMU doesn't free everything at
exit, by design, so its exit-time leak reports say nothing about the series.

  scripts/check-sanitizers.py          everything above
  scripts/check-sanitizers.py -k NAME  only checks whose name contains NAME
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(TOP, "build", "qemu", "build-san")
SUITES = ["test_qemu.", "test_fuzz.", "test_passthrough.",
          "test_guest_commands.", "test_hostile.", "test_lifecycle."]


def is_report(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return bool(re.search(r"ERROR: (Address|Leak|Undefined)|runtime error:|"
                          r"^SUMMARY: ", text, re.M))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[])
    opts = ap.parse_args()
    if not os.access(os.path.join(BUILD, "qemu-system-x86_64"), os.X_OK):
        sys.exit("check-sanitizers: %s is not built (make build-sanitizers)"
                 % BUILD)
    logs = tempfile.mkdtemp(prefix="qga-san-")
    try:
        common = "log_path=%s/report:log_exe_name=1" % logs
        env = dict(
            os.environ, QGA_BUILD=BUILD,
            # QEMU runs slower under ASan: give the waits more room
            QGA_BOOT_TIMEOUT="300", QGA_REPLY_TIMEOUT="120",
            # a small quarantine: ASan keeps freed memory there to find
            # uses after free, which the hostile tests' memory bounds
            # would count as QEMU's
            ASAN_OPTIONS=common + ":detect_leaks=0:abort_on_error=1"
            ":quarantine_size_mb=16:thread_local_quarantine_size_kb=256",
            UBSAN_OPTIONS=common + ":halt_on_error=1:print_stacktrace=1",
            # the fuzz target's own, see tests/test_fuzz.py
            QGA_FUZZ_ASAN_OPTIONS=common + ":detect_leaks=1")
        cmd = [sys.executable, os.path.join(TOP, "tests", "run.py")]
        for k in opts.k or SUITES:
            cmd += ["-k", k]
        t0 = time.monotonic()
        rc = subprocess.run(cmd, env=env, check=False).returncode
        # ASan also logs warnings there, e.g. that it doesn't fully
        # support swapcontext(), which coroutines use: only errors count
        reports = [r for r in sorted(glob.glob(os.path.join(logs, "report*")))
                   if is_report(r)]
        for r in reports:
            with open(r, encoding="utf-8", errors="replace") as f:
                print("==== sanitizer report %s\n%s"
                      % (os.path.basename(r), f.read()[-20000:]))
        print("check-sanitizers: tests %s, %d sanitizer reports, %.0f s"
              % ("passed" if rc == 0 else "FAILED", len(reports),
                 time.monotonic() - t0))
        return 1 if rc or reports else 0
    finally:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
