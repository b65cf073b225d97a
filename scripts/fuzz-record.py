#!/usr/bin/python3
"""scripts/fuzz-record.py: record what the real qemu-ga says, for fuzz seeds.

Boots the tiny guest with the agent's port on a plain socket chardev (stock
QEMU, no passthrough), syncs like every management tool does, sends the
commands below (successes, agent errors, unknown commands, bad arguments)
and writes each reply exactly as the agent sent it to
tests/fuzz/qemu-ga-replies.jsonl, one JSON object per line:
{"command": ..., "arguments": ..., "reply": "<the reply's text>"}.

scripts/fuzz.py turns these into seed inputs of qga-channel-fuzz.  Run this
again when the guest's qemu-ga changes (make fuzz-record).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

# pylint: disable=wrong-import-position
import harness  # noqa: E402

OUT = os.path.join(harness.TOP, "tests", "fuzz", "qemu-ga-replies.jsonl")

COMMANDS = [
    ("guest-info", None),
    ("guest-ping", None),
    ("guest-get-time", None),
    ("guest-get-osinfo", None),
    ("guest-get-host-name", None),
    ("guest-get-timezone", None),
    ("guest-get-users", None),
    ("guest-network-get-interfaces", None),
    ("guest-network-get-route", None),
    ("guest-get-vcpus", None),
    ("guest-get-memory-blocks", None),
    ("guest-get-memory-block-info", None),
    ("guest-fsfreeze-status", None),
    ("guest-get-fsinfo", None),
    ("guest-get-disks", None),
    ("guest-get-devices", None),
    ("guest-get-load", None),
    ("guest-get-cpustats", None),
    ("guest-get-diskstats", None),
    ("guest-ssh-get-authorized-keys", {"username": "root"}),
    ("guest-exec", {"path": "/bin/echo", "arg": ["hello", "\u00e9\u20ac"],
                    "capture-output": True}),
    ("guest-exec-status", "PID"),
    ("guest-file-open", {"path": "/proc/version", "mode": "r"}),
    ("guest-file-read", "HANDLE"),
    ("guest-file-close", "HANDLE"),
    ("guest-exec", {"path": "/nonexistent"}),
    ("guest-file-open", {"path": "/nonexistent"}),
    ("guest-exec-status", {"pid": 999999}),
    ("guest-ping", {"unexpected": 1}),
    ("guest-file-read", {"handle": "not a number"}),
    ("guest-no-such-command", None),
    ("guest-sync", {"id": 4711}),
]


def main():
    records = []
    with harness.Guest(agent="socket") as guest:
        agent = guest.agent
        agent.sync(harness.BOOT_TIMEOUT)
        pid = handle = None
        for name, args in COMMANDS:
            raw = None
            if args == "PID":
                args = {"pid": pid}
                # the process may still run: wait for its exit status,
                # which the agent reports once
                deadline = time.monotonic() + harness.REPLY_TIMEOUT
                while True:
                    raw = raw_cmd(agent, name, args)
                    if json.loads(raw)["return"].get("exited"):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("guest-exec: no exit status")
                    time.sleep(0.1)
            elif args == "HANDLE":
                args = {"handle": handle}
                if name == "guest-file-read":
                    args["count"] = 4096
            if raw is None:
                raw = raw_cmd(agent, name, args)
            reply = json.loads(raw)
            if name == "guest-exec" and "return" in reply:
                pid = reply["return"]["pid"]
            if name == "guest-file-open" and "return" in reply:
                handle = reply["return"]
            records.append({"command": name, "arguments": args,
                            "reply": raw})
            print("%-32s %s" % (name, raw[:60]))
    with open(OUT, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("fuzz-record: %d replies in %s" % (len(records), OUT))
    return 0


def raw_cmd(agent, name, args):
    msg = {"execute": name}
    if args is not None:
        msg["arguments"] = args
    agent.send(msg)
    line = agent.line(time.monotonic() + harness.REPLY_TIMEOUT,
                      strip=b"\xff")
    if line is None:
        raise RuntimeError("%s: no reply" % name)
    return line.decode("utf-8")


if __name__ == "__main__":
    sys.exit(main())
