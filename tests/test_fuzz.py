"""The fuzz target of the guest agent channel (tests/fuzz/ in the series).

make check replays every regression input (tests/fuzz/regressions/: inputs
that once crashed or leaked) and every seed once with the fuzz target, which
is built with ASan, UBSan and leak detection.  The target checks its own
invariants (each QMP command completes exactly once, every response and
event is valid JSON, nothing leaks); any violation fails.  scripts/fuzz.py
explains the rest; make fuzz runs the fuzzer itself.
"""

import glob
import json
import os
import subprocess
import sys

from harness import TOP

FUZZ = os.path.join(TOP, "scripts", "fuzz.py")


def test_fuzz_replay():
    proc = subprocess.run([sys.executable, FUZZ, "--replay"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    if proc.returncode:
        raise AssertionError("fuzz replay failed:\n" + proc.stdout[-20000:])
    regressions = glob.glob(os.path.join(TOP, "tests", "fuzz", "regressions",
                                         "*"))
    want = "replayed %d regression inputs and " % len(regressions)
    if want not in proc.stdout:
        raise AssertionError("expected '%s' in:\n%s" % (want, proc.stdout))
    print(proc.stdout.strip().splitlines()[-1])


def test_fuzz_seeds_from_real_agent():
    """Every recorded reply of the real qemu-ga becomes seeds."""
    path = os.path.join(TOP, "tests", "fuzz", "qemu-ga-replies.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    commands = {r["command"] for r in records}
    for want in ("guest-info", "guest-exec-status", "guest-file-read",
                 "guest-no-such-command"):
        if want not in commands:
            raise AssertionError("no recorded reply to %s" % want)
    seeds = glob.glob(os.path.join(TOP, "build", "fuzz", "seeds", "real-*"))
    if len(seeds) != 2 * len(records):
        raise AssertionError("%d real-agent seeds for %d replies"
                             % (len(seeds), len(records)))
