"""The tree's qemu-ga-client (python/qemu/utils/qemu_ga_client.py, run as
scripts/qmp/qemu-ga-client): through QMP with -chardev qga (--qmp, no sync
loop: QEMU keeps the channel in sync), and, as before, on an agent socket.
"""

import os
import subprocess
import sys

from harness import REPLY_TIMEOUT, TREE, Guest, tree_version

CLIENT = os.path.join(TREE, "scripts", "qmp", "qemu-ga-client")


def ga_client(address, *args, qmp=True):
    """Run qemu-ga-client; returns (exit status, stdout + stderr)."""
    proc = subprocess.run([sys.executable, CLIENT, "--address", address]
                          + (["--qmp"] if qmp else []) + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=REPLY_TIMEOUT, check=False)
    return proc.returncode, proc.stdout


def ok(address, *args, qmp=True):
    rc, out = ga_client(address, *args, qmp=qmp)
    assert rc == 0, "qemu-ga-client %s: %d\n%s" % (" ".join(args), rc, out)
    return out


def test_qga_client_over_qmp():
    """ping, info, cat, ifconfig, fsfreeze, fstrim and shutdown through a
    QMP monitor of QEMU with -chardev qga and the real qemu-ga."""
    with Guest("current", agent="qga", monitors=2, disk=True) as g:
        g.wait_agent()
        qmp, other = g.monitors
        assert ok(qmp, "ping") == ""
        info = ok(qmp, "info")
        assert info.startswith("version: %s\n" % tree_version()), info
        assert "guest-exec" in info.split("enabled:")[1], info
        assert "qga-mini" in ok(qmp, "cat", "/etc/os-release")
        ifconfig = ok(qmp, "ifconfig")
        assert "lo:\n\tinet 127.0.0.1  netmask 255.0.0.0" in ifconfig, ifconfig
        assert ok(qmp, "fsfreeze", "status").strip() == "thawed"

        # QEMU would thaw when the client exits: the client runs a
        # command while frozen (here, another client asking the status
        # on another monitor) and thaws afterwards
        out = ok(qmp, "fsfreeze", "freeze", "--", sys.executable, CLIENT,
                 "--qmp", "--address", other, "fsfreeze", "status")
        lines = out.split("\n")
        assert lines[0].endswith("filesystems frozen"), out
        assert int(lines[0].split()[0]) >= 1, out
        assert lines[1:] == ["frozen", lines[0].replace("frozen", "thawed"),
                             ""], out
        assert ok(qmp, "fsfreeze", "status").strip() == "thawed"
        rc, out = ga_client(qmp, "fsfreeze", "freeze")
        assert rc == 1 and "as soon as this client exits" in out, out
        assert ok(qmp, "fsfreeze", "status").strip() == "thawed"
        assert g.vm.cmd("query-guest-agent")["fsfreeze"]["status"] == \
            "thawed"

        assert "'paths'" in ok(qmp, "fstrim")
        # QEMU's error reaches the user
        rc, out = ga_client(qmp, "cat", "/nonexistent")
        assert rc == 1 and out.startswith("Guest agent: "), out

        ok(qmp, "shutdown")
        g.vm.wait(timeout=REPLY_TIMEOUT)
        print("qemu-ga-client over QMP: ping, info, cat, ifconfig, "
              "fsfreeze, fstrim, shutdown")


def test_qga_client_no_agent():
    """Through QMP, a guest without qemu-ga: QEMU's error, not a hang."""
    with Guest("current", agent="qga", monitors=1,
               append="qga.noagent") as g:
        g.wait_console("not starting qemu-ga")
        rc, out = ga_client(g.monitors[0], "ping")
        assert rc == 1, out
        assert out.strip() == ("The guest has not opened the guest "
                               "agent's port"), out


def test_qga_client_agent_socket():
    """The agent socket mode still works (it syncs itself)."""
    with Guest("current", agent="socket") as g:
        g.wait_agent()
        g.agent.close()
        assert ok(g.agent_path, "ping", qmp=False) == ""
        info = ok(g.agent_path, "info", qmp=False)
        assert info.startswith("version: %s\n" % tree_version()), info
        assert "qga-mini" in ok(g.agent_path, "cat", "/etc/os-release",
                                qmp=False)
