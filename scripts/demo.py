#!/usr/bin/python3
"""make demo: boot the tiny guest and talk to its agent through QMP.

The agent's port is backed by '-chardev qga': QEMU owns the channel to
qemu-ga, and guest-* commands go to QEMU's main QMP monitor like any other
command.  No agent socket is opened here.
"""

import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests"))

# pylint: disable=wrong-import-position
from harness import Guest  # noqa: E402


def short(obj, limit=400):
    text = json.dumps(obj)
    return text if len(text) <= limit else text[:limit] + " ...(%d bytes)" % len(text)


def main():
    print("== QEMU with -chardev qga,id=qga0 -device virtio-serial-pci "
          "-device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0")
    g = Guest("current", agent="qga").start()
    ok = False
    try:
        def qmp(name, **args):
            msg = {"execute": name}
            if args:
                msg["arguments"] = args
            print("-> %s" % json.dumps(msg))
            rsp = g.vm.qmp(name, **args)
            print("<- %s\n" % short(rsp))
            return rsp

        qmp("query-guest-agent")
        secs = g.wait_agent()
        print("   event GUEST_AGENT_CHANGE (available: true) %.2f s after "
              "QEMU started: QEMU synced with qemu-ga by itself\n" % secs)
        qmp("guest-ping")
        info = qmp("guest-info")["return"]
        print("   (qemu-ga %s, %d commands enabled)\n" % (
            info["version"],
            sum(1 for c in info["supported_commands"] if c["enabled"])))
        qmp("guest-get-osinfo")
        print("   guest-exec /bin/uname -a with captured output, then "
              "guest-exec-status until it exits:\n")
        pid = qmp("guest-exec", path="/bin/uname", arg=["-a"],
                  **{"capture-output": True})["return"]["pid"]
        while True:
            st = g.vm.cmd("guest-exec-status", pid=pid)
            if st["exited"]:
                break
            time.sleep(0.02)
        print("-> {\"execute\": \"guest-exec-status\", \"arguments\": "
              "{\"pid\": %d}}\n<- %s" % (pid, short({"return": st})))
        print("   output: %s\n" % base64.b64decode(st["out-data"]).decode().strip())
        handle = qmp("guest-file-open", path="/etc/os-release")["return"]
        data = qmp("guest-file-read", handle=handle, count=4096)["return"]
        qmp("guest-file-close", handle=handle)
        print("   /etc/os-release in the guest:\n   " +
              base64.b64decode(data["buf-b64"]).decode().strip()
              .replace("\n", "\n   ") + "\n")
        err = qmp("guest-file-read", handle="not-a-number")
        print("   (invalid arguments are rejected by QEMU; nothing reaches "
              "the guest: %s)\n" % err["error"]["class"])
        qmp("query-guest-agent")
        qmp("guest-shutdown")
        g.vm.wait(timeout=60)
        print("the guest powered off; ", end="")
        print("QEMU exited with status %s" % g.vm.exitcode())
        ok = g.vm.exitcode() == 0
    finally:
        g.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
