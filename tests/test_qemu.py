"""QEMU's own tests that the series touches, run from the build tree.

QMP (qmp-test with its OOB test, qmp-cmd-test), the QAPI generator's schema
regression tests, the QMP dispatcher unit test (test-qmp-cmds), the QObject
input visitor (test-qobject-input-visitor), the JSON lexer, parser and
writer (check-qjson), QString (check-qstring), QDict (check-qdict,
check-block-qdict), the QObject
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

from harness import BUILD, QEMU, REPLY_TIMEOUT, QMPSocket


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


def test_unit_check_qstring():
    """QString, with the series' qstring_from_len()."""
    meson_test("check-qstring")


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


def test_qmp_greeting_first_on_reconnect():
    """A client that connects gets the greeting first, and no event
    before the reply to qmp_capabilities, also while another monitor
    makes QEMU send events all the time and the monitor's previous client
    just left (the monitor runs in the monitor I/O thread, events come
    from the main loop).  Upstream QEMU 10.0 sent an event first on about
    3 % of such connections.  The events come from stop and cont, which
    the dispatcher runs like qmp_capabilities, so none can come between
    qmp_capabilities and its reply."""
    tmp = tempfile.mkdtemp(prefix="qga-greeting-")
    paths = [os.path.join(tmp, "m%d" % i) for i in (1, 2)]
    args = [QEMU, "-M", "none", "-display", "none", "-nodefaults"]
    listeners = []
    proc = None
    stop = threading.Event()
    cycles = []
    try:
        # QEMU gets sockets that already listen: clients need not wait
        for i, path in enumerate(paths):
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ls.bind(path)
            ls.listen()
            listeners.append(ls)
            args += ["-chardev", "socket,id=m%d,fd=%d,server=on,wait=off"
                     % (i, ls.fileno()),
                     "-mon", "chardev=m%d,mode=control" % i]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                pass_fds=[ls.fileno() for ls in listeners])
        emitter = QMPSocket(paths[0])

        def emit():
            try:
                while not stop.is_set():
                    for cmd in ("stop", "cont"):
                        assert "return" in emitter.execute(cmd)
                    cycles.append(True)
            except Exception as e:  # pylint: disable=broad-except
                cycles.append(e)

        thread = threading.Thread(target=emit, daemon=True)
        thread.start()
        bad = []
        for n in range(3000):
            try:
                client = QMPSocket(paths[1])
            except AssertionError as e:     # not the greeting first
                bad.append((n, str(e)[:200]))
                continue
            if client.events:
                bad.append((n, client.events[0]))
            client.execute("query-status")
            client.close()
        stop.set()
        thread.join(REPLY_TIMEOUT)
        errors = [c for c in cycles if c is not True]
        assert not errors, errors
        assert len(cycles) >= 50, "only %d stop/cont cycles" % len(cycles)
        assert not bad, "%d of 3000 connections got something before the " \
            "greeting or an event before qmp_capabilities' reply, first: " \
            "%r" % (len(bad), bad[:3])
        print("3000 connections, each got the greeting first; %d events "
              "meanwhile" % (2 * len(cycles)))
    finally:
        stop.set()
        for ls in listeners:
            ls.close()
        if proc:
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
