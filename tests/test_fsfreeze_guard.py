"""The fsfreeze guard and the host policy, end to end (patches 32-36).

The tiny guest with its ext4 disk on /mnt/data and the real qemu-ga behind
-chardev qga, as in test_fsfreeze.py.  A freeze is shown to hold by a
write in the guest that blocks (see test_fsfreeze.py), and to end by that
write completing.  QEMU thaws by itself when the QMP client that froze is
killed, when freeze-timeout-ms passes, and keeps guarding a freeze across a
restart of qemu-ga (which keeps its freeze); a thaw from another monitor
ends it for good.  The host policy refuses guest-exec over the real
virtio-serial port and lets the rest through; info guest-agent answers
through human-monitor-command.

The time from killing the freezing client to the blocked write completing
is printed (run.py -v shows it).
"""

import os
import signal
import subprocess
import sys
import time

from harness import REPLY_TIMEOUT, Guest, QMPSocket
from test_fsfreeze import (assert_blocked, assert_disk_mounted, fsfreeze_freeze,
                           fsfreeze_status, fsfreeze_thaw, start_write,
                           wait_written, written)

HERE = os.path.dirname(os.path.abspath(__file__))

# A QMP client in a process of its own: freezes, says so, and idles until
# it is killed
FREEZER = """
import json, sys, time
sys.path.insert(0, %r)
from harness import QMPSocket
q = QMPSocket(sys.argv[1])
print(json.dumps(q.execute("guest-fsfreeze-freeze")), flush=True)
while True:
    time.sleep(3600)
""" % HERE


def guarded_guest(qga_opts=""):
    return Guest("current", agent="qga", shell=True, disk=True, monitors=2,
                 qga_opts=qga_opts)


def fsfreeze_state(g):
    return g.vm.cmd("query-guest-agent")["fsfreeze"]


def wait_thaw_event(g, reason, timeout=REPLY_TIMEOUT):
    """The GUEST_AGENT_FSFREEZE_THAW event of a successful automatic thaw
    for @reason on the main monitor."""
    ev = g.vm.event_wait("GUEST_AGENT_FSFREEZE_THAW", timeout=timeout)
    assert ev, "QEMU did not thaw (%s) within %.0f s" % (reason, timeout)
    assert ev["data"] == {"chardev": "qga0", "reason": reason}, ev
    return ev


def assert_auto_thawed(g, reason, count=1):
    st = fsfreeze_state(g)
    assert st["status"] == "thawed", st
    assert st["auto-thaws"] == count and st["last-auto-thaw"] == reason, st
    assert "owner" not in st and not st["auto-thaw-pending"], st
    assert fsfreeze_status(g) == "thawed"


def freeze_in_process(path):
    """Start a client process that freezes through monitor @path; returns
    it once its freeze returned."""
    proc = subprocess.Popen([sys.executable, "-c", FREEZER, path],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert '"return"' in line, "the freezing client got %r" % line
    return proc


def test_fsfreeze_client_killed():
    """The client that froze is killed (SIGKILL) while a write in the
    guest waits for the thaw: QEMU thaws, the write completes."""
    with guarded_guest() as g:
        g.wait_agent()
        assert_disk_mounted(g)
        proc = freeze_in_process(g.monitors[0])
        try:
            st = fsfreeze_state(g)
            assert st["status"] == "frozen" and "owner" in st, st
            assert st["thaw-in-ms"] <= 300000, st
            write = start_write(g)
            assert_blocked(g, write)
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        wait_thaw_event(g, "client-disconnected")
        t_event = time.monotonic() - t0
        wait_written(g, write)
        t_written = time.monotonic() - t0
        assert_auto_thawed(g, "client-disconnected")
        print("client killed -> GUEST_AGENT_FSFREEZE_THAW %.0f ms, blocked "
              "write completed (seen on the console) %.0f ms"
              % (t_event * 1000, t_written * 1000))


def test_fsfreeze_timeout():
    """freeze-timeout-ms: a freeze held longer is thawed, and the write
    that waited for it completes."""
    with guarded_guest(",freeze-timeout-ms=4000") as g:
        g.wait_agent()
        fsfreeze_freeze(g)
        write = start_write(g)
        assert_blocked(g, write)
        st = fsfreeze_state(g)
        assert st["freeze-timeout-ms"] == 4000 and st["thaw-in-ms"] <= 4000, st
        wait_thaw_event(g, "timeout")
        wait_written(g, write)
        assert_auto_thawed(g, "timeout")


def test_fsfreeze_agent_restart():
    """qemu-ga killed while frozen and restarted by the guest's init: QEMU
    re-learns the freeze (guest-fsfreeze-status after the resync), keeps
    its owner, and still thaws when that client goes."""
    with guarded_guest() as g:
        g.wait_agent()
        q = QMPSocket(g.monitors[0])
        try:
            rsp = q.execute("guest-fsfreeze-freeze")
            assert rsp.get("return", 0) >= 1, rsp
            owner = fsfreeze_state(g)["owner"]
            write = start_write(g)
            g.clear_events()
            # a frozen qemu-ga does not exit on SIGTERM
            status, _ = g.shell_run("kill -9 $(pidof qemu-ga)")
            assert status == 0
            # the port closes and opens again (the event is throttled:
            # wait for the state, see Guest.wait_agent_change)
            g.wait_agent_change(True)
            # QEMU's own guest-fsfreeze-status goes first: the new qemu-ga
            # kept the freeze
            assert fsfreeze_status(g) == "frozen"
            st = fsfreeze_state(g)
            assert st["status"] == "frozen" and st["owner"] == owner, st
            assert st["auto-thaws"] == 0, st
            assert_blocked(g, write)
        finally:
            q.close()
        wait_thaw_event(g, "client-disconnected")
        wait_written(g, write)
        assert_auto_thawed(g, "client-disconnected")


def test_fsfreeze_thaw_other_monitor():
    """A second freeze fails with the agent's error; another monitor
    thaws: the freeze ends, and its owner leaving later makes QEMU thaw
    nothing.  info guest-agent shows the freeze."""
    with guarded_guest() as g:
        g.wait_agent()
        q = QMPSocket(g.monitors[0])
        rsp = q.execute("guest-fsfreeze-freeze")
        assert rsp.get("return", 0) >= 1, rsp
        out = g.vm.cmd("human-monitor-command",
                       command_line="info guest-agent")
        assert "Guest agent on chardev qga0: guest connected, in sync" in out
        assert "filesystems: frozen for " in out and "by QMP client" in out
        owner = fsfreeze_state(g)["owner"]
        # a second freeze gets the agent's own error, and changes nothing
        err = g.qmp_error("guest-fsfreeze-freeze")
        assert err["desc"].startswith("Guest agent: "), err
        assert fsfreeze_state(g)["owner"] == owner
        write = start_write(g)
        assert_blocked(g, write)
        fsfreeze_thaw(g)
        wait_written(g, write)
        st = fsfreeze_state(g)
        assert st["status"] == "thawed" and "owner" not in st, st
        q.close()
        # a new client is accepted once QEMU has handled the disconnect;
        # a command on it goes after the disconnect's notification
        q = QMPSocket(g.monitors[0])
        assert "return" in q.execute("guest-ping")
        q.close()
        st = fsfreeze_state(g)
        assert st["auto-thaws"] == 0 and not st["auto-thaw-pending"], st
        assert written(g, write)
        out = g.vm.cmd("human-monitor-command",
                       command_line="info guest-agent")
        assert "filesystems: thawed" in out, out


def test_policy_real_agent():
    """block-rpcs over the real virtio-serial port: guest-exec fails with
    the host's error, guest-ping and guest-info go through."""
    with Guest("current", agent="qga",
               qga_opts=",block-rpcs=guest-exec") as g:
        g.wait_agent()
        err = g.qmp_error("guest-exec", path="/bin/true")
        assert err == {"class": "GenericError",
                       "desc": "Guest agent command 'guest-exec' is blocked "
                       "by the host: chardev 'qga0' lists it in "
                       "block-rpcs"}, err
        assert g.vm.cmd("guest-ping") == {}
        assert "guest-exec" in [c["name"] for c in
                                g.vm.cmd("guest-info")["supported_commands"]]
        assert g.vm.cmd("query-guest-agent")["block-rpcs"] == ["guest-exec"]
