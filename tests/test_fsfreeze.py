"""guest-fsfreeze-* through the passthrough, end to end: a freeze holds.

The tiny guest's real qemu-ga behind -chardev qga, with a virtio-blk disk
that holds an ext4 file system, which the guest mounts on /mnt/data before
it starts qemu-ga (Guest(disk=True); qga.disk in guest/make-guest.sh).
guest-fsfreeze-freeze, -status and -thaw go to QEMU's QMP monitor; what
happens in the guest is seen on its console shell, because a frozen
qemu-ga refuses every command but guest-ping, guest-info,
guest-fsfreeze-status, guest-fsfreeze-thaw and guest-sync*.

It shows that the freeze is real, not only what the agent says: a write to
/mnt/data started in the guest while the file system is frozen has not
completed after a full round trip through the console shell (its writer
sleeps uninterruptibly in the kernel), and completes once
guest-fsfreeze-thaw has returned.  Nothing waits by sleeping: every step
waits for output that the step before it caused.

The helpers (fsfreeze_*, start_write, round_trip, assert_blocked,
wait_written, ...) are for later tests of the file system commands.
"""

import collections
import re
import secrets
import time

from harness import REPLY_TIMEOUT, Guest, QMPAgent, agent_read_file

DATA = "/mnt/data"
MOUNTED = "qga-mini: mounted /dev/vda on %s" % DATA

# a write started in the guest's console shell: @marker appears on the
# console once it has completed; @pid is its subshell's
Write = collections.namedtuple("Write", "marker pid path")


def split_echo(marker):
    """A shell command that prints @marker, typed so that the terminal's
    echo of the command line does not contain @marker (as
    Guest.shell_run does)."""
    half = len(marker) // 2
    return "echo %s''%s" % (marker[:half], marker[half:])


def fsfreeze_status(g):
    """guest-fsfreeze-status through QMP: "thawed" or "frozen"."""
    return g.vm.cmd("guest-fsfreeze-status")


def fsfreeze_freeze(g):
    """guest-fsfreeze-freeze through QMP; returns how many file systems
    the agent froze (checked to be at least one: /mnt/data)."""
    n = g.vm.cmd("guest-fsfreeze-freeze")
    assert isinstance(n, int) and n >= 1, "guest-fsfreeze-freeze: %r" % n
    return n


def fsfreeze_thaw(g):
    """guest-fsfreeze-thaw through QMP; returns how many file systems the
    agent thawed."""
    n = g.vm.cmd("guest-fsfreeze-thaw")
    assert isinstance(n, int), "guest-fsfreeze-thaw: %r" % n
    return n


def assert_disk_mounted(g):
    """The guest mounted its disk (Guest(disk=True)) before it started
    qemu-ga; call after Guest.wait_agent()."""
    assert MOUNTED in g.console(), (
        "the guest did not mount its disk (is build/guest built by the "
        "current guest/make-guest.sh? run make guest):\n%s"
        % g.console()[-3000:])


def start_write(g, path=DATA + "/f", data="x"):
    """Start writing @data to @path in the background from the console
    shell, and wait until its subshell is running (it prints a start
    marker, then writes); returns a Write.  Its marker appears on the
    console once the write has completed: on a frozen file system, only
    after a thaw."""
    token = secrets.token_hex(6)
    started, marker = "write-started-" + token, "WROTE-" + token
    status, pid = g.shell_run("(%s; echo %s > %s; %s) &"
                              % (split_echo(started), data, path,
                                 split_echo(marker)))
    assert status == 0 and pid, (status, pid)
    g.wait_console(started)
    return Write(marker, pid, path)


def round_trip(g, pid, timeout=REPLY_TIMEOUT):
    """A full round trip through the console shell, which also reads the
    state of process @pid (its /proc/PID/stat state letter, "gone" once it
    has exited).  Everything the guest printed before the shell ran it is
    on the console when this returns."""
    token = secrets.token_hex(6)
    start = len(g.console())
    g.shell("read -r a b s c < /proc/%d/stat 2>/dev/null || s=gone; "
            "echo probe-%s''%s:$s" % (pid, token[:6], token[6:]))
    # up to the end of the line, which may still be arriving
    pattern = re.compile(r"probe-%s:(\w+)[\r\n]" % token)
    deadline = time.monotonic() + timeout
    while True:
        m = pattern.search(g.console(), start)
        if m:
            return m.group(1)
        assert time.monotonic() < deadline, (
            "the console shell did not answer the probe within %.0f s:\n%s"
            % (timeout, g.console()[-3000:]))
        time.sleep(0.05)


def written(g, write):
    """Whether @write (a Write) has completed, as far as the console shows
    so far."""
    return write.marker in g.console()


def assert_blocked(g, write):
    """@write has not completed after a full round trip through the
    console shell, and its writer sleeps uninterruptibly (state D): the
    kernel holds it, as it holds writes to a frozen file system."""
    state = round_trip(g, write.pid)
    assert not written(g, write), (
        "the write to %s completed while the file system was frozen:\n%s"
        % (write.path, g.console()[-3000:]))
    assert state == "D", (
        "the writer of %s (pid %d) is in state %s, not blocked in the "
        "kernel (D):\n%s" % (write.path, write.pid, state,
                             g.console()[-3000:]))


def wait_written(g, write, timeout=REPLY_TIMEOUT):
    """Wait until @write has completed."""
    g.wait_console(write.marker, timeout=timeout)


def assert_agent_refuses(g, cmd, **args):
    """A frozen qemu-ga refuses @cmd (anything but the few commands it
    allows while frozen); QEMU passes its error on."""
    desc = g.qmp_error(cmd, **args)["desc"]
    assert desc.startswith("Guest agent: ") and "has been disabled" in desc, (
        "%s while frozen: %s" % (cmd, desc))


def test_fsfreeze_holds_write_until_thaw():
    """Freeze through QMP; a write to /mnt/data started in the guest
    blocks until the thaw through QMP, then completes, and the data is
    there."""
    with Guest("current", agent="qga", shell=True, disk=True) as g:
        g.wait_agent()
        assert_disk_mounted(g)
        assert fsfreeze_status(g) == "thawed"

        frozen = fsfreeze_freeze(g)
        assert fsfreeze_status(g) == "frozen"
        # the agent lives, and keeps to its rules while frozen
        assert g.vm.cmd("guest-ping") == {}
        assert_agent_refuses(g, "guest-file-open", path=DATA + "/f",
                             mode="w")

        write = start_write(g)
        assert_blocked(g, write)
        # still held after another round trip, and still frozen
        assert_blocked(g, write)
        assert fsfreeze_status(g) == "frozen"

        assert fsfreeze_thaw(g) == frozen
        wait_written(g, write)
        assert fsfreeze_status(g) == "thawed"
        assert round_trip(g, write.pid) in ("Z", "gone")
        assert agent_read_file(QMPAgent(g.vm), write.path) == b"x\n"
