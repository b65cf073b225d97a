#!/usr/bin/python3
"""make bench: QEMU start to first guest-ping reply, for the tiny guest.

Boots each guest variant N times (interleaved, so that machine noise hits
both alike) and prints median, min and max.  A benchmark, not a test: it
reports numbers and asserts nothing about them.
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


def boot_to_ping(variant):
    with Guest(variant) as g:
        g.wait_agent()
        assert g.agent.cmd("guest-ping") == {}
        return time.monotonic() - g.t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=3, help="boots per variant")
    ap.add_argument("variants", nargs="*", default=["current", "bookworm"])
    opts = ap.parse_args()
    times = {v: [] for v in opts.variants}
    for _ in range(opts.n):
        for v in opts.variants:
            times[v].append(boot_to_ping(v))
    for v, t in times.items():
        print("boot to first guest-ping, %-9s n=%d  median %.2f s  "
              "(min %.2f, max %.2f)" % (v, len(t), statistics.median(t),
                                        min(t), max(t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
