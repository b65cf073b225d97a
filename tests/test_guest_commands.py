"""Every guest-* command is a QMP command generated from the agent's schema:
end to end with the tiny guest's real qemu-ga, through the main monitor only.
"""

import base64
import secrets
import time

from harness import Guest, tree_version


def qmp_exec(g, path, args=(), timeout=60):
    """guest-exec with captured output, polled with guest-exec-status."""
    pid = g.vm.cmd("guest-exec", path=path, arg=list(args),
                   **{"capture-output": True})["pid"]
    deadline = time.monotonic() + timeout
    while True:
        st = g.vm.cmd("guest-exec-status", pid=pid)
        if st["exited"]:
            return st
        assert time.monotonic() < deadline, "guest-exec %s never exited" % path
        time.sleep(0.01)


def test_generated_commands_introspection():
    """guest-* commands are listed by query-commands and query-qmp-schema
    with their argument types."""
    with Guest("current", agent="qga") as g:
        cmds = {c["name"] for c in g.vm.cmd("query-commands")}
        for name in ("guest-exec", "guest-file-read", "guest-shutdown",
                     "guest-get-osinfo", "guest-fsfreeze-status"):
            assert name in cmds, name
        assert "guest-sync" not in cmds and "guest-sync-delimited" not in cmds
        schema = {e["name"]: e for e in g.vm.cmd("query-qmp-schema")}
        exe = schema["guest-exec"]
        assert exe["meta-type"] == "command", exe
        args = schema[exe["arg-type"]]
        members = {m["name"] for m in args["members"]}
        assert {"path", "arg", "env", "input-data",
                "capture-output", "timeout"} <= members, members


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

        token = secrets.token_hex(8)
        st = qmp_exec(g, "/bin/sh", ["-c", "echo %s; echo err >&2; exit 3"
                                     % token])
        assert st["exitcode"] == 3, st
        assert base64.b64decode(st["out-data"]) == (token + "\n").encode()
        assert base64.b64decode(st["err-data"]) == b"err\n"

        # file round trip: write from the host, read back, check in guest
        blob = secrets.token_bytes(100000)
        h = g.vm.cmd("guest-file-open", path="/tmp/blob", mode="w")
        r = g.vm.cmd("guest-file-write", handle=h,
                     **{"buf-b64": base64.b64encode(blob).decode()})
        assert r["count"] == len(blob), r
        g.vm.cmd("guest-file-close", handle=h)
        h = g.vm.cmd("guest-file-open", path="/tmp/blob", mode="r")
        data = b""
        while True:
            r = g.vm.cmd("guest-file-read", handle=h, count=32768)
            data += base64.b64decode(r["buf-b64"])
            if r["eof"]:
                break
        g.vm.cmd("guest-file-close", handle=h)
        assert data == blob
        st = qmp_exec(g, "/bin/sha256sum", ["/tmp/blob"])
        import hashlib  # pylint: disable=import-outside-toplevel
        assert base64.b64decode(st["out-data"]).split()[0].decode() == \
            hashlib.sha256(blob).hexdigest()

        fs = g.vm.cmd("guest-fsfreeze-status")
        assert fs == "thawed", fs

        # invalid arguments never reach the guest: rejected by QEMU
        err = g.qmp_error("guest-file-read", handle="x")
        assert err["class"] == "GenericError", err
        assert g.vm.cmd("query-guest-agent")["in-flight"] == 0


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
