#!/usr/bin/python3
"""make demo: boot the tiny guest and show a short guest-agent session.

Until the passthrough lands this talks to qemu-ga through the agent's own
unix socket chardev (what management tools do today); QEMU itself is driven
over its QMP monitor.  The session ends with guest-shutdown, and QEMU exits
because the guest powered off.
"""

import json
import os
import secrets
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests"))

# pylint: disable=wrong-import-position
from harness import Guest, agent_exec, agent_read_file  # noqa: E402


def short(obj, limit=300):
    text = json.dumps(obj)
    return text if len(text) <= limit else text[:limit] + " ...(%d bytes)" % len(text)


def main():
    print("== booting the tiny guest (TCG) with qemu-ga on "
          "virtio-serial port org.qemu.guest_agent.0")
    g = Guest("current").start()
    try:
        print("QMP query-status -> %s" % short(g.vm.cmd("query-status")))
        secs = g.wait_agent()
        print("agent synced (0xFF + guest-sync-delimited) %.2f s after QEMU "
              "started\n" % secs)

        def show(name, args=None):
            msg = {"execute": name}
            if args is not None:
                msg["arguments"] = args
            print("-> %s" % json.dumps(msg))
            ret = g.agent.cmd(name, args)
            print("<- %s\n" % short({"return": ret}))
            return ret

        show("guest-ping")
        info = show("guest-info")
        print("   (qemu-ga %s, %d commands enabled)\n" % (
            info["version"],
            sum(1 for c in info["supported_commands"] if c["enabled"])))
        show("guest-get-osinfo")
        show("guest-get-time")
        print("guest-exec /bin/uname -a, then guest-exec-status until it exits:")
        st = agent_exec(g.agent, "/bin/uname", ["-a"])
        print("   exit %d, output: %s" % (st["exitcode"],
                                          st["out-data"].decode().strip()))
        token = secrets.token_hex(4)
        agent_exec(g.agent, "/bin/sh", ["-c", "echo hello %s > /tmp/demo" % token])
        print("guest-file-open/read/close /tmp/demo:")
        print("   %r\n" % agent_read_file(g.agent, "/tmp/demo").decode())
        print("-> {\"execute\": \"guest-shutdown\"}   (no reply on success)")
        g.agent.send({"execute": "guest-shutdown"})
        g.vm.wait(timeout=60)
        print("<- QEMU exited with status %s after the guest powered off"
              % g.vm.exitcode())
        ok = g.vm.exitcode() == 0
    finally:
        g.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
