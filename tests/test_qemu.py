"""QEMU's own tests that the series touches, run from the build tree.

QMP (qmp-test with its OOB test, qmp-cmd-test), the QAPI generator's schema
regression tests, the QMP dispatcher unit test (test-qmp-cmds), the QObject
input visitor (test-qobject-input-visitor), the JSON lexer, parser and
writer (check-qjson), QDict (check-qdict, check-block-qdict), the QObject
output visitor (test-qobject-output-visitor), chardev
(test-char), qemu-ga (test-qga) and virtio-serial (the virtio-serial paths
of qos-test).  A check fails when meson reports a failure, when the test
did not actually run, or when any of its TAP subtests was skipped (meson
counts a TAP "ok N ... # SKIP" as a pass).  One check of its own runs QMP
end to end: a client that reconnects while events flow gets the greeting
first.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading

from harness import BUILD, QEMU, REPLY_TIMEOUT, strict_json


def tap_skips(out):
    """The TAP lines of @out that report a skipped subtest."""
    return re.findall(r"^(?:not )?ok\b.*#\s*skip\b.*$", out, re.M | re.I)


def meson_test(name, test_args=None, tap=True):
    """meson test @name; with @tap, it speaks TAP, and at least one
    subtest must pass."""
    logbase = "qga-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    cmd = ["meson", "test", "--no-rebuild", "--print-errorlogs",
           "--logbase", logbase]
    if test_args:
        cmd += ["--test-args", test_args]
    cmd.append(name)
    env = dict(os.environ, QTEST_QEMU_BINARY=QEMU)
    proc = subprocess.run(cmd, cwd=BUILD, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    out = proc.stdout
    with open(os.path.join(BUILD, "meson-logs", logbase + ".txt"),
              encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert proc.returncode == 0, "%s failed:\n%s" % (name, out[-20000:])
    ok = re.search(r"^Ok:\s+(\d+)", out, re.M)
    skipped = re.search(r"^Skipped:\s+(\d+)", out, re.M)
    assert ok and int(ok.group(1)) >= 1, "%s did not run:\n%s" % (name, out)
    assert skipped and int(skipped.group(1)) == 0, "%s skipped:\n%s" % (
        name, out)
    skips = tap_skips(log)
    assert not skips, "%s skipped subtests:\n%s" % (name, "\n".join(skips))
    subtests = len(re.findall(r"^ok \d+", log, re.M))
    assert subtests >= 1 or not tap, "%s: no TAP subtest passed:\n%s" % (
        name, log[-5000:])
    print("%s: ok (%d TAP subtests passed)" % (name, subtests))


def test_qapi_schema_regression():
    meson_test("QAPI schema regression tests", tap=False)


def test_unit_qmp_cmds():
    meson_test("test-qmp-cmds")


def test_unit_qobject_input_visitor():
    """Includes the lenient visitor that reads guest agent replies."""
    meson_test("test-qobject-input-visitor")


def test_unit_qmp_event():
    meson_test("test-qmp-event")


def test_unit_check_qjson():
    """The JSON parser that reads the guest agent's output (its duplicate
    key case leaks under LeakSanitizer without the series' fix)."""
    meson_test("check-qjson")


def test_unit_check_qdict():
    """QDict's iteration over the buckets in use (the series' bitmap)."""
    meson_test("check-qdict")


def test_unit_check_block_qdict():
    meson_test("check-block-qdict")


def test_unit_qobject_output_visitor():
    """Builds the QMP responses the series forwards."""
    meson_test("test-qobject-output-visitor")


def test_unit_char():
    meson_test("test-char")


def test_unit_qga():
    meson_test("test-qga")


def test_qtest_qmp():
    meson_test("qtest-x86_64/qmp-test")


class _Lines:
    """JSON lines from a unix socket, one at a time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(REPLY_TIMEOUT)
        self.sock.connect(path)
        self.buf = b""

    def next(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "QEMU closed the monitor"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return strict_json(line)

    def execute(self, name):
        """Run @name; returns the messages that came before its reply."""
        self.sock.sendall(b'{"execute": "%s"}\n' % name.encode())
        before = []
        while True:
            msg = self.next()
            if "return" in msg or "error" in msg:
                assert "return" in msg, msg
                return before
            before.append(msg)


def test_qmp_greeting_first_on_reconnect():
    """A client that connects gets the greeting first, and no event
    before qmp_capabilities, also while another monitor makes QEMU send
    events all the time and the monitor's previous client just left
    (the monitor runs in the monitor I/O thread, events come from the
    main loop).  Upstream QEMU 10.0 sent an event first on about 3 % of
    such connections."""
    tmp = tempfile.mkdtemp(prefix="qga-greeting-")
    paths = [os.path.join(tmp, "m%d" % i) for i in (1, 2)]
    args = [QEMU, "-M", "none", "-display", "none", "-nodefaults"]
    for i, path in enumerate(paths):
        args += ["-chardev", "socket,id=m%d,path=%s,server=on,wait=off"
                 % (i, path), "-mon", "chardev=m%d,mode=control" % i]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    emitted = []

    def emit(client):
        try:
            while not stop.is_set():
                for cmd in ("stop", "cont"):
                    client.execute(cmd)
                emitted.append(2)
        except Exception as e:  # pylint: disable=broad-except
            emitted.append(e)

    try:
        first = None
        for _ in range(int(REPLY_TIMEOUT * 10)):
            try:
                first = _Lines(paths[0])
                break
            except OSError:
                stop.wait(0.1)
        assert first, "QEMU's monitor never listened"
        first.next()
        first.execute("qmp_capabilities")
        thread = threading.Thread(target=emit, args=(first,), daemon=True)
        thread.start()
        bad = []
        for n in range(3000):
            client = _Lines(paths[1])
            greeting = client.next()
            early = client.execute("qmp_capabilities")
            if "QMP" not in greeting or early:
                bad.append((n, greeting, early))
            client.execute("query-status")
            client.sock.close()
        stop.set()
        thread.join(REPLY_TIMEOUT)
        errors = [e for e in emitted if isinstance(e, Exception)]
        assert not errors, errors
        assert sum(emitted) >= 100, "only %d events were sent" % sum(emitted)
        assert not bad, "%d of 3000 connections got something before the " \
            "greeting or an event before qmp_capabilities, first: %r" % (
                len(bad), bad[:3])
        print("3000 connections, each got the greeting first; %d events "
              "meanwhile" % sum(emitted))
    finally:
        stop.set()
        proc.terminate()
        proc.wait(REPLY_TIMEOUT)
        shutil.rmtree(tmp, ignore_errors=True)


def test_qtest_qga_passthrough():
    """The agent channel against a fake agent (and a real qemu-ga)."""
    meson_test("qtest-x86_64/qga-passthrough-test")


def test_qtest_qmp_cmd():
    meson_test("qtest-x86_64/qmp-cmd-test")


def test_qtest_virtio_serial():
    """The virtio-serial cases of qos-test.  glib's -p wants full test
    paths, and meson's TAP parser rejects qos-test's output for several -p,
    so each case runs on its own."""
    qos = os.path.join(BUILD, "tests", "qtest", "qos-test")
    env = dict(os.environ, QTEST_QEMU_BINARY=QEMU)
    listing = subprocess.run([qos, "-l"], env=env, text=True, cwd=BUILD,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             check=True).stdout
    paths = [l.strip() for l in listing.splitlines()
             if l.startswith("/x86_64/") and "/virtio-serial" in l]
    assert any(p.endswith("virtio-serial-tests/hotplug") for p in paths), \
        "qos-test lists no virtio-serial hotplug test:\n" + listing
    for path in paths:
        proc = subprocess.run([qos, "--tap", "-p", path], env=env, text=True,
                              cwd=BUILD, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout
        assert re.search(r"^ok 1 %s$" % re.escape(path), proc.stdout, re.M), \
            proc.stdout
        assert not tap_skips(proc.stdout), proc.stdout
    print("qos-test: %d virtio-serial cases passed" % len(paths))
