"""Every guest-* command is a QMP command generated from the agent's schema:
end to end with the tiny guest's real qemu-ga, through the main monitor only.
"""

import base64
import hashlib
import secrets
import time

from harness import (INVALID_HANDLE, Guest, QMPAgent, agent_exec,
                     agent_read_file, tree_version)


def test_generated_commands_listed():
    """query-commands lists the guest-* commands of query-qmp-schema (which
    test_agent_schema checks against the agent's schema), without
    guest-sync and guest-sync-delimited."""
    with Guest("current", agent="qga") as g:
        cmds = {c["name"] for c in g.vm.cmd("query-commands")
                if c["name"].startswith("guest-")}
        schema = {e["name"] for e in g.vm.cmd("query-qmp-schema")
                  if e["meta-type"] == "command" and
                  e["name"].startswith("guest-")}
        assert cmds == schema, (cmds ^ schema)
        assert "guest-exec" in cmds, cmds
        assert "guest-sync" not in cmds and "guest-sync-delimited" not in cmds


def test_guest_commands_real_agent():
    with Guest("current", agent="qga") as g:
        g.wait_agent()
        assert g.vm.cmd("guest-info")["version"] == tree_version()

        osinfo = g.vm.cmd("guest-get-osinfo")
        assert osinfo["id"] == "debian" and osinfo["machine"] == "x86_64", \
            osinfo
        nics = {n["name"]: n for n in g.vm.cmd("guest-network-get-interfaces")}
        assert "lo" in nics, nics
        addrs = {a["ip-address"] for a in nics["lo"].get("ip-addresses", [])}
        assert "127.0.0.1" in addrs, nics["lo"]

        t = g.vm.cmd("guest-get-time")
        assert abs(t / 1e9 - time.time()) < 3600, t

        agent = QMPAgent(g.vm)
        token = secrets.token_hex(8)
        st = agent_exec(agent, "/bin/sh", ["-c", "echo %s; echo err >&2; "
                                           "exit 3" % token])
        assert st["exitcode"] == 3, st
        assert st["out-data"] == (token + "\n").encode(), st
        assert st["err-data"] == b"err\n", st

        # file round trip: write from the host, read back, check in guest
        blob = secrets.token_bytes(100000)
        h = g.vm.cmd("guest-file-open", path="/tmp/blob", mode="w")
        r = g.vm.cmd("guest-file-write", handle=h,
                     **{"buf-b64": base64.b64encode(blob).decode()})
        assert r["count"] == len(blob), r
        g.vm.cmd("guest-file-close", handle=h)
        data = agent_read_file(agent, "/tmp/blob", count=32768,
                               limit=len(blob))
        assert data == blob
        st = agent_exec(agent, "/bin/sha256sum", ["/tmp/blob"])
        assert st["out-data"].split()[0].decode() == \
            hashlib.sha256(blob).hexdigest(), st

        fs = g.vm.cmd("guest-fsfreeze-status")
        assert fs == "thawed", fs

        # invalid arguments never reach the guest: rejected by QEMU, with
        # QEMU's error, not the agent's
        err = g.qmp_error("guest-file-read", handle="x")
        assert err == {"class": "GenericError", "desc": INVALID_HANDLE}, err


def test_guest_shutdown_through_qmp():
    """guest-shutdown: the client gets its success reply and the VM powers
    off (QEMU exits because of -no-reboot... and poweroff)."""
    g = Guest("current", agent="qga").start()
    try:
        g.wait_agent()
        rsp = g.vm.qmp("guest-shutdown")
        assert rsp == {"return": {}}, rsp
        g.vm.wait(timeout=60)
        assert g.vm.exitcode() == 0, g.vm.exitcode()
    finally:
        g.stop()


def test_old_agent_lacks_command():
    """qemu-ga 7.2 has no guest-get-load: a CommandNotFound error."""
    with Guest("bookworm", agent="qga") as g:
        g.wait_agent()
        assert g.vm.cmd("guest-info")["version"].startswith("7.2.")
        err = g.qmp_error("guest-get-load")
        assert err["class"] == "CommandNotFound", err
        assert g.vm.cmd("guest-ping") == {}
