"""End-to-end test harness for qga-passthrough.

Starts the QEMU we built (with QEMU's own qemu.machine / qemu.qmp packages
from the unpacked tree's python/ directory), boots the tiny guest of
guest/make-guest.sh under TCG, and talks QMP and the guest agent protocol.

Nothing here comes from PyPI: Debian's /usr/bin/python3 and its standard
library, plus the tree's python/ directory on sys.path.
"""

import base64
import json
import os
import random
import secrets
import shutil
import socket
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TREE = os.environ.get("QGA_TREE", os.path.join(TOP, "build", "qemu"))
BUILD = os.path.join(TREE, "build")
QEMU = os.environ.get("QGA_QEMU", os.path.join(BUILD, "qemu-system-x86_64"))
QEMU_GA = os.path.join(BUILD, "qga", "qemu-ga")
GUESTS = os.path.join(TOP, "build", "guest")

sys.path.insert(0, os.path.join(TREE, "python"))

# pylint: disable=wrong-import-position
from qemu.machine import QEMUMachine  # noqa: E402

# Short kernel command line measured to boot fastest under TCG (see
# guest/README.md): PVH entry, quiet, no mitigations, no self-tests.
KERNEL_APPEND = (
    "console=ttyS0 quiet panic=-1 mitigations=off rodata=off tsc=reliable "
    "no_timer_check i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd "
    "cryptomgr.notests random.trust_cpu=on init_on_alloc=0 "
    "initcall_blacklist=jent_mod_init,crypto_kdf108_init,init_kprobe_trace,"
    "bpf_tcp_ca_kfunc_init,bpf_dummy_struct_ops_init,trace_eval_init,"
    "load_system_certificate_list"
)

AGENT_PORT = "org.qemu.guest_agent.0"

# Bounds on waits, so that nothing hangs; generous because TCG on a busy
# two-core machine is slow.  They are failure bounds, not expectations.
BOOT_TIMEOUT = float(os.environ.get("QGA_BOOT_TIMEOUT", "120"))
REPLY_TIMEOUT = float(os.environ.get("QGA_REPLY_TIMEOUT", "60"))


def tree_version():
    """QEMU's version; qemu-ga reports the same in guest-info."""
    with open(os.path.join(TREE, "VERSION"), encoding="utf-8") as f:
        return f.read().strip()


class AgentError(Exception):
    """The agent replied with an error, or did not reply in time."""


class AgentSocket:
    """A plain host-side client of qemu-ga on a unix socket chardev.

    This is what every management tool does today (the baseline our
    passthrough replaces): 0xFF + guest-sync-delimited with a fresh id,
    skip stale replies, then one request and one reply at a time.
    """

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def connect(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                self.sock = sock
                return
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        self.buf = b""

    def send(self, obj, delimit=False):
        data = json.dumps(obj, separators=(",", ":")).encode()
        self.sock.settimeout(self.timeout)
        self.sock.sendall((b"\xff" if delimit else b"") + data + b"\n")

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                line = line.replace(b"\xff", b"").strip()
                if line:
                    return line
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return None
            if not chunk:
                raise AgentError("agent socket closed by QEMU")
            self.buf += chunk

    def sync(self, timeout):
        """Handshake; returns once the newest sync id comes back.

        Bytes written before the guest opens the port wait in the socket,
        so the first sync is answered as soon as qemu-ga starts; re-send
        with a fresh id on a back-off in case an earlier one was lost.
        """
        deadline = time.monotonic() + timeout
        resend = 1.0
        while time.monotonic() < deadline:
            sid = random.randint(1, 2 ** 31)
            self.send({"execute": "guest-sync-delimited",
                       "arguments": {"id": sid}}, delimit=True)
            until = min(deadline, time.monotonic() + resend)
            resend = min(resend * 2, 8.0)
            while True:
                line = self._line(until)
                if line is None:
                    break
                try:
                    reply = json.loads(line)
                except ValueError:
                    continue
                if isinstance(reply, dict) and reply.get("return") == sid:
                    return sid
        raise AgentError("no reply to guest-sync-delimited within %.0f s"
                         % timeout)

    def cmd(self, name, args=None, timeout=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        self.send(msg)
        line = self._line(time.monotonic() + (timeout or self.timeout))
        if line is None:
            raise AgentError("%s: no reply" % name)
        reply = json.loads(line)
        if "error" in reply:
            raise AgentError("%s: %s" % (name, reply["error"]))
        return reply["return"]


class Guest:
    """QEMU running the tiny guest, with a QMP monitor (QEMUMachine).

    agent="socket": the agent's port is backed by a unix socket chardev
    (stock QEMU); self.agent is an AgentSocket on it.
    """

    def __init__(self, variant="current", agent="socket", append="",
                 extra_args=(), shell=False, monitors=0, qga_opts=""):
        self.dir = tempfile.mkdtemp(prefix="qga-test-")
        self.guest_dir = os.path.join(GUESTS, variant)
        for f in ("vmlinux", "initrd.cpio"):
            if not os.path.exists(os.path.join(self.guest_dir, f)):
                raise RuntimeError("guest %s is not built (run make guest)"
                                   % variant)
        self.console_log = os.path.join(self.dir, "console.log")
        self.agent_path = os.path.join(self.dir, "qga.sock")
        args = [
            "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "1",
            "-m", "256", "-nodefaults", "-no-user-config", "-no-reboot",
            "-kernel", os.path.join(self.guest_dir, "vmlinux"),
            "-initrd", os.path.join(self.guest_dir, "initrd.cpio"),
            "-append", (KERNEL_APPEND + " " + append).strip(),
            "-serial", "chardev:con0",
            "-device", "virtio-serial-pci,id=vser0",
        ]
        self.console_path = os.path.join(self.dir, "console.sock")
        self.console_sock = None
        if shell:
            # a shell on the console (see guest/make-guest.sh), reached
            # through a socket; the chardev's logfile records the output
            args[args.index("-append") + 1] += " qga.shell"
            args += ["-chardev", "socket,id=con0,path=%s,server=on,wait=off,"
                     "logfile=%s" % (self.console_path, self.console_log)]
        else:
            args += ["-chardev", "file,id=con0,path=%s" % self.console_log]
        if agent == "socket":
            args += ["-chardev", "socket,id=qga0,path=%s,server=on,wait=off"
                     % self.agent_path]
        elif agent == "qga":
            # the passthrough: QEMU owns the agent channel
            args += ["-chardev", "qga,id=qga0" + qga_opts]
        # extra QMP monitors, for QMP client libraries (qemu.qmp.QMPClient)
        self.monitors = []
        for i in range(monitors):
            path = os.path.join(self.dir, "qmp%d.sock" % i)
            args += ["-chardev", "socket,id=qmp%d,path=%s,server=on,wait=off"
                     % (i, path), "-mon", "chardev=qmp%d,mode=control" % i]
            self.monitors.append(path)
        if agent != "none":
            args += ["-device", "virtserialport,id=qgaport,chardev=qga0,"
                     "name=%s" % AGENT_PORT]
        args += list(extra_args)
        self.vm = QEMUMachine(QEMU, args=args, base_temp_dir=self.dir,
                              log_dir=self.dir)
        self.agent = AgentSocket(self.agent_path) if agent == "socket" else None

    def start(self):
        self.t0 = time.monotonic()
        self.vm.launch()
        if self.agent:
            self.agent.connect()
        return self

    def wait_agent(self, timeout=BOOT_TIMEOUT):
        """Wait until the agent is usable; returns seconds since start.

        With a socket chardev: sync with the agent over its socket.  With
        the passthrough: wait for QEMU's GUEST_AGENT_AVAILABLE event.
        """
        if self.agent:
            self.agent.sync(timeout)
        else:
            self.vm.event_wait("GUEST_AGENT_AVAILABLE", timeout=timeout)
        return time.monotonic() - self.t0

    def qmp_error(self, cmd, **args):
        """Run a QMP command that must fail; returns its error object."""
        rsp = self.vm.qmp(cmd, **args)
        assert "error" in rsp, "%s unexpectedly succeeded: %s" % (cmd, rsp)
        return rsp["error"]

    def shell(self, command):
        """Type a command into the guest's console shell (shell=True)."""
        if self.console_sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.console_path)
            self.console_sock = sock
        self.console_sock.sendall(command.encode() + b"\n")

    def wait_console(self, text, timeout=BOOT_TIMEOUT):
        """Wait until the console output contains text."""
        deadline = time.monotonic() + timeout
        while text not in self.console():
            if time.monotonic() > deadline:
                raise AssertionError("console never showed %r:\n%s"
                                     % (text, self.console()[-3000:]))
            time.sleep(0.05)

    def console(self):
        try:
            with open(self.console_log, encoding="utf-8",
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        try:
            if self.agent:
                self.agent.close()
            if self.console_sock:
                self.console_sock.close()
            self.vm.shutdown(timeout=10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def agent_exec(agent, path, args=(), timeout=REPLY_TIMEOUT):
    """guest-exec with captured output, polled until it exits."""
    pid = agent.cmd("guest-exec", {"path": path, "arg": list(args),
                                   "capture-output": True})["pid"]
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        status = agent.cmd("guest-exec-status", {"pid": pid})
        if status.get("exited"):
            for key in ("out-data", "err-data"):
                if key in status:
                    status[key] = base64.b64decode(status[key])
            return status
        if time.monotonic() > deadline:
            raise AgentError("guest-exec %s did not exit" % path)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def agent_read_file(agent, path, count=65536):
    handle = agent.cmd("guest-file-open", {"path": path, "mode": "r"})
    data = bytearray()
    try:
        while True:
            r = agent.cmd("guest-file-read", {"handle": handle,
                                              "count": count})
            data += base64.b64decode(r["buf-b64"])
            if r.get("eof") or r["count"] == 0:
                break
    finally:
        agent.cmd("guest-file-close", {"handle": handle})
    return bytes(data)


def freeze_agent(guest, stop=True):
    """SIGSTOP (or SIGCONT) qemu-ga in the guest through the console shell,
    and wait until the shell has done it.  The marker is split in the typed
    command so that only the command's output, not its echo, matches."""
    marker = "%s-%s" % ("stopped" if stop else "continued", secrets.token_hex(4))
    half = len(marker) // 2
    guest.shell("kill -%s $(pidof qemu-ga) && echo %s''%s"
                % ("STOP" if stop else "CONT", marker[:half], marker[half:]))
    guest.wait_console(marker)
