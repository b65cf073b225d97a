#!/usr/bin/python3
"""Round trip of guest commands: QEMU's QMP passthrough vs. the agent's own
socket, measured in the same run on the same guest image.

Baseline: a guest whose agent port is a unix socket chardev, driven the way
management tools do today (our AgentSocket: one request, one reply).
Passthrough: a guest with -chardev qga, driven through the main QMP monitor
with qemu.qmp's synchronous client.  Prints medians and p99s and the ratio
passthrough/baseline.  A benchmark, not a test: it asserts nothing about the
numbers.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests"))

# pylint: disable=wrong-import-position
from harness import Guest  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p / 100.0)))]


def measure(call, n):
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    return lat


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=300, help="requests per series")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds (noise hits both alike)")
    opts = ap.parse_args()
    sock = Guest("current").start()
    qga = Guest("current", agent="qga").start()
    try:
        sock.wait_agent()
        qga.wait_agent()
        res = {}
        for _ in range(opts.rounds):
            for cmd in ("guest-ping", "guest-info"):
                res.setdefault(("socket", cmd), []).extend(
                    measure(lambda c=cmd: sock.agent.cmd(c), opts.n))
                res.setdefault(("qmp", cmd), []).extend(
                    measure(lambda c=cmd: qga.vm.cmd(c), opts.n))
        for cmd in ("guest-ping", "guest-info"):
            base = res[("socket", cmd)]
            ours = res[("qmp", cmd)]
            print("%-10s n=%d  agent socket: median %.3f ms p99 %.3f ms | "
                  "QMP passthrough: median %.3f ms p99 %.3f ms | "
                  "ratio %.2f" % (cmd, len(base),
                                  statistics.median(base) * 1e3,
                                  pct(base, 99) * 1e3,
                                  statistics.median(ours) * 1e3,
                                  pct(ours, 99) * 1e3,
                                  statistics.median(ours) /
                                  statistics.median(base)))
    finally:
        sock.stop()
        qga.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
