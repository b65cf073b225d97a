#!/usr/bin/python3
"""scripts/fuzz.py: run the guest agent channel's fuzz target.

  scripts/fuzz.py [--time S]   fuzz for S seconds (default 180) from the
                               seeds and the corpus kept in build/fuzz/
  scripts/fuzz.py --replay     run every regression input and every seed
                               once (what make check and make
                               check-sanitizers do)
  scripts/fuzz.py --seeds      only write the seed inputs

The target, qga-channel-fuzz (tests/fuzz/ in the series), is built by
scripts/build.sh with QGA_FLAVOUR=fuzz in build/qemu/build-fuzz: clang,
libFuzzer, ASan and UBSan.  Its input is a configuration byte and a list of
operations (see the opcode enum in tests/fuzz/qga-channel-fuzz.c); the seeds
written here are replies the real qemu-ga sent (tests/fuzz/qemu-ga-replies
.jsonl, recorded by scripts/fuzz-record.py) framed as answers to the matching
QMP commands, and the hostile guests of tests/test_hostile.py.

New corpus entries stay in build/fuzz/corpus (not committed).  A crash is
minimised, copied to tests/fuzz/regressions/ (commit it with the fix: make
check replays it from then on) and fails the run.  The summary line is:
  fuzz: N execs in S s (N/s), cov C, ft F, corpus N, crashes N
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TREE = os.environ.get("QGA_TREE", os.path.join(TOP, "build", "qemu"))
BIN = os.path.join(TREE, "build-fuzz", "tests", "fuzz", "qga-channel-fuzz")
# make fuzz-fast: LeakSanitizer only (QGA_FLAVOUR=fuzz-fast), for long runs
BIN_FAST = os.path.join(TREE, "build-fuzz-fast", "tests", "fuzz",
                        "qga-channel-fuzz")
DICT = os.path.join(TREE, "tests", "fuzz", "qga-channel.dict")
WORK = os.path.join(TOP, "build", "fuzz")
SEEDS = os.path.join(WORK, "seeds")
CORPUS = os.path.join(WORK, "corpus")
CRASHES = os.path.join(WORK, "crashes")
REPLIES = os.path.join(TOP, "tests", "fuzz", "qemu-ga-replies.jsonl")
REGRESSIONS = os.path.join(TOP, "tests", "fuzz", "regressions")
MAX_LEN = 16384

# The opcodes of qga-channel-fuzz.c (part of its input format)
(OP_GUEST_RAW, OP_GUEST_RAW_LARGE, OP_GUEST_SYNC_REPLY, OP_GUEST_REPLY,
 OP_GUEST_ERROR, OP_GUEST_EVENT, OP_GUEST_ROOM, OP_QMP, OP_QMP_NAMED,
 OP_QMP_RAW, OP_QUERY, OP_ABANDON, OP_TIME, OP_RUN, OP_PORT, OP_RESET,
 OP_SHUTDOWN, OP_VM_STOP, OP_VM_CONT, OP_SUSPEND, OP_MIGRATION, OP_DEVICE,
 OP_CHARDEV) = range(23)


def blob(data, scale=1):
    """A length byte (counting units of @scale) and @data, padded with
    JSON white space to a multiple of @scale."""
    if isinstance(data, str):
        data = data.encode()
    data += b" " * (-len(data) % scale)
    if len(data) // scale > 255:
        raise ValueError("seed operand too long: %d bytes" % len(data))
    return bytes([len(data) // scale]) + data


def reply_op(op, value):
    text = json.dumps(value, ensure_ascii=False).encode()
    if len(text) <= 255:
        return bytes([op, 0]) + blob(text)
    return bytes([op, 4]) + blob(text, 64)


def synced(config=0):
    """Configuration byte, then the agent answers the first sync."""
    return bytes([config, OP_GUEST_SYNC_REPLY, 1, OP_RUN, 0])


def command(name, args):
    return (bytes([OP_QMP_NAMED]) + blob(name)
            + blob(json.dumps(args) if args is not None else b"")
            + bytes([OP_RUN, 0]))


def seeds():
    out = {}
    with open(REPLIES, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for i, r in enumerate(records):
        reply = json.loads(r["reply"])
        if "return" in reply:
            tail = reply_op(OP_GUEST_REPLY, reply["return"])
        else:
            tail = reply_op(OP_GUEST_ERROR, reply["error"])
        # the reply in time, then the same one late (stale), and in a
        # second input the reply to a client that went away
        s = synced() + command(r["command"], r["arguments"]) + tail
        out["real-%02d-%s" % (i, r["command"])] = (
            s + bytes([OP_QUERY, OP_RUN, 0]))
        out["real-%02d-%s-abandon" % (i, r["command"])] = (
            synced() + command(r["command"], r["arguments"])
            + bytes([OP_ABANDON, 0]) + tail + bytes([OP_TIME, 255, 255]))
    ping = command("guest-ping", None)
    # hostile guests, as in tests/test_hostile.py
    out["hostile-ff-flood"] = (synced() + ping + bytes([OP_GUEST_RAW_LARGE])
                               + blob(b"\xff" * 8192, 64))
    out["hostile-garbage"] = (synced() + ping + bytes([OP_GUEST_RAW_LARGE])
                              + blob(bytes(range(256)) * 32, 64))
    out["hostile-stale"] = (synced() + ping + bytes([OP_GUEST_REPLY, 2])
                            + blob(b"{}") + bytes([OP_GUEST_REPLY, 0])
                            + blob(b"{}"))
    out["hostile-nesting"] = (synced() + ping + bytes([OP_GUEST_REPLY, 4])
                              + blob(b"[" * 65 + b"]" * 65, 64))
    out["hostile-non-finite"] = (synced() + ping + bytes([OP_GUEST_REPLY, 0])
                                 + blob(b'{"x": 1e999}'))
    out["hostile-oversize"] = (synced(2) + ping + bytes([OP_GUEST_REPLY, 4])
                               + blob(b'"' + b"x" * 8000 + b'"', 64))
    out["hostile-events"] = (synced() + b"".join(
        bytes([OP_GUEST_EVENT]) + blob('"e%d", "data": {"n": %d}' % (i, i))
        for i in range(20)) + bytes([OP_TIME, 10, 30]))
    out["hostile-idle-output"] = (synced() + bytes([OP_GUEST_RAW])
                                  + blob(b'{"return": {}}\n') + ping
                                  + bytes([OP_GUEST_SYNC_REPLY, 1,
                                           OP_GUEST_REPLY, 0]) + blob(b"{}"))
    out["hostile-port-flap"] = (synced() + ping + b"".join(
        bytes([OP_PORT, i & 1, OP_RUN, 0]) for i in range(16)))
    out["hostile-slow-guest"] = (synced() + bytes([OP_GUEST_ROOM, 0]) + ping
                                 + bytes([OP_TIME, 255, 255]))
    out["no-response"] = (synced() + command("guest-shutdown", None)
                          + bytes([OP_GUEST_SYNC_REPLY, 0, OP_SHUTDOWN, 3,
                                   OP_VM_STOP, 1, OP_RESET, 3]))
    out["lifecycle"] = (synced() + ping + bytes([OP_MIGRATION, OP_MIGRATION])
                        + ping + bytes([OP_DEVICE, OP_DEVICE]) + ping
                        + bytes([OP_VM_STOP, 2, OP_VM_CONT]) + ping
                        + bytes([OP_CHARDEV, OP_CHARDEV, 0]) + ping)
    out["escape-hatch"] = (synced() + bytes([OP_QMP_RAW]) + blob(b"{}")
                           + bytes([0, 1, 10, OP_GUEST_REPLY, 0])
                           + blob(b'{"any": [1, 2.5, "x"]}'))
    return out


def write_seeds():
    shutil.rmtree(SEEDS, ignore_errors=True)
    os.makedirs(SEEDS)
    for name, data in seeds().items():
        if len(data) > MAX_LEN:
            raise ValueError("seed %s is longer than %d bytes" % (name,
                                                                  MAX_LEN))
        with open(os.path.join(SEEDS, name), "wb") as f:
            f.write(data)
    return len(os.listdir(SEEDS))


def need_binary(path=BIN):
    if not os.access(path, os.X_OK):
        sys.exit("fuzz: %s is not built (make fuzz builds it)" % path)


def replay():
    """Run each regression input and seed once; any crash or sanitizer
    report fails."""
    need_binary()
    n = write_seeds()
    files = sorted(glob.glob(os.path.join(REGRESSIONS, "*")))
    files += sorted(glob.glob(os.path.join(SEEDS, "*")))
    # make check-sanitizers passes its own (with a log_path)
    asan = os.environ.get("QGA_FUZZ_ASAN_OPTIONS", "detect_leaks=1")
    env = dict(os.environ, ASAN_OPTIONS=asan + ":abort_on_error=1",
               UBSAN_OPTIONS=os.environ.get(
                   "UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"))
    proc = subprocess.run([BIN, "-runs=1"] + files, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    out = proc.stdout.decode(errors="replace")
    ran = len(re.findall(r"^Running: ", out, re.M))
    if proc.returncode or ran != len(files):
        sys.stdout.write(out[-20000:])
        print("fuzz: replay failed (exit %d, %d of %d inputs ran)"
              % (proc.returncode, ran, len(files)))
        return 1
    print("fuzz: replayed %d regression inputs and %d seeds, no failure"
          % (len(files) - n, n))
    return 0


def last_stats(out):
    m = None
    for m in re.finditer(r"cov: (\d+) ft: (\d+) corp: (\d+)", out):
        pass
    return m.groups() if m else ("?", "?", "?")


def fuzz(seconds, fast=False, jobs=1, max_len=MAX_LEN):
    binary = BIN_FAST if fast else BIN
    need_binary(binary)
    write_seeds()
    for d in (CORPUS, CRASHES):
        os.makedirs(d, exist_ok=True)
    before = set(os.listdir(CRASHES))
    t0 = time.monotonic()
    cmd = [binary, "-max_total_time=%d" % seconds, "-max_len=%d" % max_len,
           "-dict=" + DICT, "-print_final_stats=1", "-timeout=10",
           "-rss_limit_mb=4096", "-artifact_prefix=" + CRASHES + "/"]
    if jobs > 1:
        # one process per job; a crash is kept and the others go on
        cmd += ["-fork=%d" % jobs, "-ignore_crashes=1", "-ignore_ooms=0",
                "-ignore_timeouts=0"]
    proc = subprocess.run(cmd + [CORPUS, SEEDS], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - t0
    out = proc.stdout.decode(errors="replace")
    execs = re.search(r"stat::number_of_executed_units: (\d+)", out)
    execs = execs.group(1) if execs else "?"
    rate = re.search(r"stat::average_exec_per_sec: +(\d+)", out)
    rate = rate.group(1) if rate else "?"
    cov, ft, corp = last_stats(out)
    # -fork prints its own totals, and no final stats
    forked = re.findall(r"^#(\d+): cov: (\d+) ft: (\d+) corp: (\d+) ",
                        out, re.M)
    if forked:
        execs, cov, ft, corp = forked[-1]
        rate = "%d" % (int(execs) / max(elapsed, 1))
    crashes = sorted(set(os.listdir(CRASHES)) - before)
    for c in crashes:
        path = os.path.join(CRASHES, c)
        minimised = path + ".min"
        subprocess.run([binary, "-minimize_crash=1", "-runs=20000",
                        "-exact_artifact_path=" + minimised, path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        os.makedirs(REGRESSIONS, exist_ok=True)
        keep = minimised if os.path.exists(minimised) else path
        shutil.copy(keep, os.path.join(REGRESSIONS, c))
        print("fuzz: crash %s, minimised to tests/fuzz/regressions/%s"
              % (c, c))
    if crashes or (proc.returncode and execs == "?"):
        sys.stdout.write(out[-20000:])
    print("fuzz: %s execs in %.0f s (%s/s), cov %s, ft %s, corpus %s, "
          "crashes %d" % (execs, elapsed, rate, cov, ft, corp,
                          len(crashes)))
    return 1 if crashes or proc.returncode else 0


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=int, default=180)
    ap.add_argument("--fast", action="store_true",
                    help="the LeakSanitizer-only build (make fuzz-fast)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="fuzzing processes (libFuzzer -fork)")
    ap.add_argument("--max-len", type=int, default=MAX_LEN,
                    help="longest input (shorter: more executions per "
                    "second, fewer large replies)")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--seeds", action="store_true")
    opts = ap.parse_args()
    if opts.seeds:
        print("fuzz: %d seeds in %s" % (write_seeds(), SEEDS))
        return 0
    if opts.replay:
        return replay()
    return fuzz(opts.time, opts.fast, opts.jobs, opts.max_len)


if __name__ == "__main__":
    sys.exit(main())
