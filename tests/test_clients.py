"""Plain QMP clients, as docs/system/guest-agent-passthrough.rst shows them:
socat (raw JSON lines, nothing but the QMP protocol) and the tree's
scripts/qmp/qmp-shell, each on an extra QMP monitor of a guest with
-chardev qga and the real qemu-ga.
"""

import base64
import json
import os
import select
import subprocess
import sys
import time

from harness import INVALID_HANDLE, REPLY_TIMEOUT, TREE, Guest, LineReader

QMP_SHELL = os.path.join(TREE, "scripts", "qmp", "qmp-shell")


class LineClient(LineReader):
    """A child process that speaks QMP on stdin/stdout, one JSON object a
    line; every wait is bounded."""

    def __init__(self, argv):
        super().__init__()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        data = os.read(self.proc.stdout.fileno(), 65536)
        assert data, "the client exited: %r" % self.close()
        return data

    def recv(self, timeout=REPLY_TIMEOUT):
        """The next message that is not an event."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(deadline)
            assert line is not None, "no reply within %.0f s (got %r)" % (
                timeout, self.buf[-500:])
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def exchange(self, request):
        self.send(json.dumps(request))
        return self.recv()

    def close(self):
        """Close stdin, wait for the child (killing it if it hangs) and
        return its stderr."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


def test_socat_client():
    """The socat session of the documentation: raw JSON lines, replies in
    order, 'id' echoed, a guest file read through the main protocol."""
    with Guest("current", agent="qga", monitors=1) as g:
        g.wait_agent()
        c = LineClient(["socat", "-", "UNIX-CONNECT:" + g.monitors[0]])
        try:
            assert "QMP" in c.recv(), "no QMP greeting"
            assert c.exchange({"execute": "qmp_capabilities"}) == {
                "return": {}}
            rsp = c.exchange({"execute": "guest-get-host-name", "id": "h"})
            assert rsp["id"] == "h" and rsp["return"]["host-name"], rsp
            handle = c.exchange({"execute": "guest-file-open",
                                 "arguments": {"path": "/etc/os-release"}})
            handle = handle["return"]
            rsp = c.exchange({"execute": "guest-file-read",
                              "arguments": {"handle": handle}})["return"]
            text = base64.b64decode(rsp["buf-b64"]).decode()
            assert rsp["count"] == len(text) and "qga-mini" in text, rsp
            assert c.exchange({"execute": "guest-file-close",
                               "arguments": {"handle": handle}}) == {
                "return": {}}
            # two requests in one write: two replies, in order
            c.send('{"execute": "guest-ping", "id": 1}'
                   '{"execute": "query-status", "id": 2}')
            assert c.recv() == {"return": {}, "id": 1}
            assert c.recv()["id"] == 2
            # rejected by QEMU: the agent's error would say "Guest agent: "
            rsp = c.exchange({"execute": "guest-file-read",
                              "arguments": {"handle": "x"}})
            assert rsp["error"] == {
                "class": "GenericError",
                "desc": INVALID_HANDLE}, rsp
        finally:
            err = c.close()
        assert c.proc.returncode == 0, err


def test_qmp_shell_client():
    """scripts/qmp/qmp-shell, with the commands of the documentation."""
    with Guest("current", agent="qga", monitors=1) as g:
        g.wait_agent()
        proc = subprocess.run(
            [sys.executable, QMP_SHELL, g.monitors[0]],
            input="guest-get-osinfo\n"
                  "guest-exec path=/bin/true timeout-ms=5000\n"
                  "guest-file-read handle=not-a-number\n",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=REPLY_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    replies = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("(QEMU)"):
            line = line[len("(QEMU)"):].strip()
        if line.startswith("{"):
            replies.append(json.loads(line))
    assert len(replies) == 3, proc.stdout
    assert replies[0]["return"]["kernel-release"], replies[0]
    assert replies[1]["return"]["pid"] > 0, replies[1]
    assert replies[2]["error"]["desc"] == INVALID_HANDLE, replies[2]
