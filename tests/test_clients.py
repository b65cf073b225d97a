"""Plain QMP clients, as docs/system/guest-agent-passthrough.rst shows them:
socat (raw JSON lines, nothing but the QMP protocol), the tree's
scripts/qmp/qmp-shell and qemu.qmp's QMPClient with the largest responses
the default max-reply-size lets through, each on an extra QMP monitor of a
guest with -chardev qga and the real qemu-ga.
"""

import asyncio
import base64
import hashlib
import json
import os
import select
import subprocess
import sys
import time

from harness import INVALID_HANDLE, REPLY_TIMEOUT, TREE, Guest, LineReader

# pylint: disable=wrong-import-order
from qemu.qmp import ExecuteError, QMPClient

# -chardev qga's default max-reply-size, and the guest-file-read count
# it allows: (8 MiB - 1 KiB) / 4 * 3, base64 taking 4 bytes for 3
MAX_REPLY_SIZE = 8 << 20
READ_CLAMP = 6290688
# qemu-ga's limit on the output it captures, per stream
EXEC_OUTPUT_MAX = 16 << 20

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


async def exec_status(qmp, path, args, timeout=REPLY_TIMEOUT):
    """guest-exec @path with captured output, and its guest-exec-status
    once it exited (out-data decoded)"""
    pid = (await qmp.execute("guest-exec", {
        "path": path, "arg": args, "capture-output": True}))["pid"]
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        status = await qmp.execute("guest-exec-status", {"pid": pid})
        if status["exited"]:
            if "out-data" in status:
                status["out-data"] = base64.b64decode(status["out-data"])
            return status
        assert time.monotonic() < deadline, "%s did not exit" % path
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def test_qmpclient_largest_responses():
    """qemu.qmp's QMPClient reads at most 10 MiB per message, and a larger
    one ends its connection.  With the default max-reply-size (8 MiB), the
    largest guest-file-read and the largest exec output QEMU lets through
    arrive intact, qemu-ga's largest exec output (16 MiB) fails as an
    invalid reply, and the connection goes on working."""
    with Guest("current", agent="qga", monitors=1) as g:
        g.wait_agent()

        async def scenario():
            qmp = QMPClient("big")
            await qmp.connect(g.monitors[0])
            # qemu.qmp's read limit: readbuflen in QEMU 10.2's copy,
            # _limit in 10.0's
            # pylint: disable=protected-access
            limit = getattr(qmp, "readbuflen", None) or qmp._limit
            assert limit == 10 << 20, limit
            try:
                st = await exec_status(qmp, "/bin/sh", [
                    "-c", "head -c %d /dev/urandom >/tmp/big && "
                    "head -c %d /tmp/big | sha256sum"
                    % (2 * READ_CLAMP, READ_CLAMP)])
                assert st["exitcode"] == 0, st
                digest = st["out-data"].split()[0].decode()

                handle = await qmp.execute("guest-file-open",
                                           {"path": "/tmp/big"})
                rsp = await qmp.execute("guest-file-read", {
                    "handle": handle, "count": 4 * READ_CLAMP})
                await qmp.execute("guest-file-close", {"handle": handle})
                data = base64.b64decode(rsp["buf-b64"])
                assert rsp["count"] == len(data) == READ_CLAMP, rsp["count"]
                assert hashlib.sha256(data).hexdigest() == digest
                read_size = len(json.dumps({"return": rsp}))

                st = await exec_status(qmp, "/bin/sh", [
                    "-c", "head -c %d /tmp/big" % READ_CLAMP])
                assert st["out-data"] == data, len(st["out-data"])
                exec_size = len(json.dumps({"return": {
                    "exitcode": 0, "exited": True,
                    "out-data": base64.b64encode(data).decode()}}))
                assert max(read_size, exec_size) <= MAX_REPLY_SIZE < limit

                try:
                    await exec_status(qmp, "/bin/sh", [
                        "-c", "head -c %d /dev/zero" % EXEC_OUTPUT_MAX])
                    raise AssertionError("a 16 MiB exec output arrived")
                except ExecuteError as err:
                    assert err.error.error.class_ == "GenericError", err
                    assert err.error.error.desc == (
                        "Guest agent reply to 'guest-exec-status' was "
                        "invalid: reply exceeds max-reply-size (%d bytes)"
                        % MAX_REPLY_SIZE), err.error.error.desc
                assert await qmp.execute("guest-ping") == {}
                await exec_status(qmp, "/bin/rm", ["/tmp/big"])
                print("largest responses: guest-file-read %d bytes, "
                      "guest-exec-status %d bytes (QMPClient's limit %d)"
                      % (read_size, exec_size, limit))
            finally:
                await qmp.disconnect()

        asyncio.run(scenario())
