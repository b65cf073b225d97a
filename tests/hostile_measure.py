#!/usr/bin/python3
"""tests/hostile_measure.py: what a hostile guest's urandom flood costs.

  QGA_QEMU=/path/to/qemu-system-x86_64 python3 tests/hostile_measure.py

Boots the tiny guest without qemu-ga (qga.noagent) behind -chardev qga,
runs 'cat /dev/urandom > /dev/virtio-ports/org.qemu.guest_agent.0' in it
for --seconds, and meanwhile measures
  - the latency of query-status on another monitor, back to back,
  - three guest-ping with "timeout-ms": 3000 sent at the same moment on three
    more monitors: when each answer arrives and what it says,
  - QEMU's peak RSS (VmHWM),
  - the guest agent events QEMU sends.
A measurement, not a test: it asserts nothing about the numbers, and works
with the binary before the hardening (GUEST_AGENT_AVAILABLE/UNAVAILABLE)
as well as after it (GUEST_AGENT_CHANGE).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
from harness import (QEMU, Guest, LatencyProbe,  # noqa: E402
                     concurrent_commands, wait_for)

PORT = "/dev/virtio-ports/org.qemu.guest_agent.0"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="length of the flood (default 10)")
    ap.add_argument("--ping-at", type=float, default=3.0,
                    help="send the three guest-ping this long into the flood")
    opts = ap.parse_args()

    g = Guest("current", agent="qga", append="qga.noagent",
              console_socket=True, monitors=4).start()
    try:
        g.wait_console("job control turned off")
        idle = g.qemu_memory()
        g.upload("/tmp/flood.sh", "exec cat /dev/urandom > %s\n" % PORT)
        probe = LatencyProbe(g.monitors[0]).start()
        t0 = time.monotonic()
        pid = g.spawn("/tmp/flood.sh")
        wait_for(lambda: g.vm.cmd("query-guest-agent")["guest-connected"],
                 30, "the flood never opened the port")
        time.sleep(max(0.0, t0 + opts.ping_at - time.monotonic()))
        pings = concurrent_commands(g.monitors[1:4], "guest-ping",
                                    {"timeout-ms": 3000}, timeout=60)
        time.sleep(max(0.0, t0 + opts.seconds - time.monotonic()))
        summary = probe.stop()
        flood_secs = time.monotonic() - t0
        mem = g.qemu_memory()
        state = g.vm.cmd("query-guest-agent")
        g.kill(pid, group=True)
    finally:
        g.stop()

    events = {}
    for ev in summary["events"]:
        if ev["event"].startswith("GUEST_AGENT"):
            events[ev["event"]] = events.get(ev["event"], 0) + 1
    print("binary: %s" % QEMU)
    print("urandom flood for %.1f s" % flood_secs)
    print("%-44s %s" % ("measure", "value"))
    print("%-44s %d" % ("query-status round trips (other monitor)",
                        summary["n"]))
    print("%-44s %.3f s" % ("query-status latency p99", summary["p99"]))
    print("%-44s %.3f s" % ("query-status latency max", summary["max"]))
    for i, (secs, rsp) in enumerate(pings):
        what = rsp.get("error", {}).get("desc", rsp.get("return"))
        print("%-44s %.2f s  %s"
              % ("guest-ping timeout 3000, monitor %d" % (i + 1), secs, what))
    print("%-44s %d MiB" % ("QEMU VmRSS idle before the flood",
                            idle["VmRSS"] // 1024))
    print("%-44s %d MiB" % ("QEMU VmRSS after the flood",
                            mem["VmRSS"] // 1024))
    print("%-44s %d MiB" % ("QEMU VmHWM (peak RSS)", mem["VmHWM"] // 1024))
    print("%-44s %s" % ("guest agent events during the flood",
                        ", ".join("%s x%d" % kv
                                  for kv in sorted(events.items())) or "none"))
    keys = ("synced", "timeouts", "invalid-replies", "stale-replies")
    print("%-44s %s" % ("query-guest-agent after the flood",
                        {k: state[k] for k in keys if k in state}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
