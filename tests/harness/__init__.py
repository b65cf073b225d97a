"""End-to-end test harness for qga-passthrough.

Starts the QEMU we built (with QEMU's own qemu.machine / qemu.qmp packages
from the unpacked tree's python/ directory), boots the tiny guest of
guest/make-guest.sh under TCG, and talks QMP and the guest agent protocol.

Nothing here comes from PyPI: Debian's /usr/bin/python3 and its standard
library, plus the tree's python/ directory on sys.path.
"""

import base64
import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TREE = os.environ.get("QGA_TREE", os.path.join(TOP, "build", "qemu"))
# QGA_BUILD: another build directory, e.g. build/qemu/build-san for
# make check-sanitizers
BUILD = os.environ.get("QGA_BUILD", os.path.join(TREE, "build"))
QEMU = os.environ.get("QGA_QEMU", os.path.join(BUILD, "qemu-system-x86_64"))
QEMU_GA = os.path.join(BUILD, "qga", "qemu-ga")
GUESTS = os.environ.get("QGA_GUESTS", os.path.join(TOP, "build", "guest"))

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


def run(cmd, cwd=None, check=True):
    """Run @cmd, with its stderr in its stdout (text); returns the
    CompletedProcess.  With @check, fail when it exits non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s"
                             % (" ".join(cmd), proc.returncode, proc.stdout))
    return proc


class LineReader:
    """Newline-terminated messages from a byte stream, every wait bounded.
    Subclasses define _read(timeout): the next bytes, None when nothing
    came within @timeout seconds; at the end of the stream it raises."""

    def __init__(self):
        self.buf = b""

    def _read(self, timeout):
        raise NotImplementedError

    def line(self, deadline, strip=b""):
        """The next line that is not empty once @strip's bytes are
        removed (without them, and without surrounding white space), or
        None when the monotonic time @deadline passes first."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                for b in strip:
                    line = line.replace(bytes([b]), b"")
                line = line.strip()
                if line:
                    return line
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            chunk = self._read(left)
            if chunk is not None:
                self.buf += chunk


class AgentSocket(LineReader):
    """A plain host-side client of qemu-ga on a unix socket chardev.

    This is what every management tool does today (the baseline our
    passthrough replaces): 0xFF + guest-sync-delimited with a fresh id,
    skip stale replies, then one request and one reply at a time.
    """

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        super().__init__()
        self.path = path
        self.timeout = timeout
        self.sock = None

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

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return None
        if not chunk:
            raise AgentError("agent socket closed by QEMU")
        return chunk

    def _line(self, deadline):
        return self.line(deadline, strip=b"\xff")

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


# e2fsprogs (priority required in Debian, so always installed)
MKE2FS = "/sbin/mke2fs"
DISK_SIZE = 16 << 20


def make_ext4_image(path, size=DISK_SIZE):
    """Create @path, a raw image of @size bytes holding an empty ext4 file
    system (mke2fs's defaults for its size, with a journal); returns
    @path.  Inode tables and journal are written now, so that the guest's
    kernel has nothing to initialise lazily after mounting it."""
    with open(path, "wb") as f:
        f.truncate(size)
    run([MKE2FS, "-q", "-F", "-t", "ext4", "-L", "qga-data",
         "-E", "lazy_itable_init=0,lazy_journal_init=0", path])
    return path


class Guest:
    """QEMU running the tiny guest, with a QMP monitor (QEMUMachine).

    agent="socket": the agent's port is backed by a unix socket chardev
    (stock QEMU); self.agent is an AgentSocket on it.
    """

    def __init__(self, variant="current", agent="socket", append="",
                 extra_args=(), shell=False, monitors=0, qga_opts="",
                 console_socket=False, disk=False):
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
        if shell or console_socket:
            # the console reached through a socket, so that tests can type
            # into a shell in the guest; the chardev's logfile records the
            # output.  shell=True: a second shell on the console besides
            # init (qga.shell, see guest/make-guest.sh).  console_socket
            # alone: only init's own shell, which it execs with qga.noagent
            if shell:
                args[args.index("-append") + 1] += " qga.shell"
            args += ["-chardev", "socket,id=con0,path=%s,server=on,wait=off,"
                     "logfile=%s" % (self.console_path, self.console_log)]
        else:
            args += ["-chardev", "file,id=con0,path=%s" % self.console_log]
        # disk=True: a fresh ext4 file system on a virtio-blk disk, which
        # the guest mounts on /mnt/data before it starts qemu-ga (qga.disk,
        # see guest/make-guest.sh); the image is self.disk_path
        self.disk_path = None
        if disk:
            try:
                self.disk_path = make_ext4_image(os.path.join(self.dir,
                                                              "data0.img"))
            except BaseException:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            args[args.index("-append") + 1] += " qga.disk"
            args += ["-drive", "file=%s,format=raw,if=none,id=data0"
                     % self.disk_path,
                     "-device", "virtio-blk-pci,drive=data0"]
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
        the passthrough: wait for QEMU's GUEST_AGENT_CHANGE event with
        available true.
        """
        if self.agent:
            self.agent.sync(timeout)
        else:
            self.wait_agent_change(True, timeout=timeout)
        return time.monotonic() - self.t0

    def wait_agent_change(self, available, timeout=REPLY_TIMEOUT):
        """Wait for a GUEST_AGENT_CHANGE event with @available (events
        already received on the main monitor count); returns it.

        The event is throttled (one per second and chardev; the latest
        state in a window wins), so a quick false-then-true may arrive as
        only the true one: wait for states, not for transitions.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no GUEST_AGENT_CHANGE with available=%s "
                                     "within %.0f s" % (available, timeout))
            try:
                ev = self.vm.event_wait("GUEST_AGENT_CHANGE", timeout=left,
                                        match={"data": {"available":
                                                        available}})
            except TimeoutError:
                continue
            # match treats False like any value; check exactly
            if ev and ev["data"]["available"] is available:
                data = ev["data"]
                assert ("reason" in data) == (not available), ev
                return ev

    def clear_events(self):
        """Forget the events the main monitor received so far."""
        self.vm.get_qmp_events(wait=False)

    def qemu_memory(self):
        """QEMU's VmRSS and VmHWM (peak RSS) in KiB, from /proc."""
        return proc_memory(self.vm.get_pid())

    def qmp_error(self, cmd, **args):
        """Run a QMP command that must fail; returns its error object."""
        rsp = self.vm.qmp(cmd, **args)
        assert "error" in rsp, "%s unexpectedly succeeded: %s" % (cmd, rsp)
        return rsp["error"]

    def _console_drain(self, sock):
        # The logfile records the output; the socket must still be read,
        # or it fills up after a few hundred bytes (the serial port sends
        # a byte per write, and each counts fully against the socket's
        # buffer) and the guest's console output stalls
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def shell(self, command):
        """Type a command into the guest's console shell (shell=True, or
        console_socket=True with qga.noagent)."""
        if self.console_sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.console_path)
            self.console_sock = sock
            threading.Thread(target=self._console_drain, args=(sock,),
                             daemon=True).start()
        self.console_sock.sendall(command.encode() + b"\n")

    def wait_console(self, text, timeout=BOOT_TIMEOUT):
        """Wait until the console output contains text."""
        deadline = time.monotonic() + timeout
        while text not in self.console():
            if time.monotonic() > deadline:
                raise AssertionError("console never showed %r:\n%s"
                                     % (text, self.console()[-3000:]))
            time.sleep(0.05)

    def shell_run(self, command, timeout=REPLY_TIMEOUT):
        """Type @command into the console shell and wait until it is done.

        Returns (status, pid): the command's exit status, and $! (the pid
        of the last command started in the background, or None).  The
        marker is split in the typed text so that only the shell's output,
        not the terminal's echo of the command, matches.
        """
        token = secrets.token_hex(6)
        start = len(self.console())
        self.shell(command)
        self.shell("echo done-%s''%s:$?:$!" % (token[:6], token[6:]))
        # up to the end of the line: the console may be read while the
        # line is still arriving, with $! cut short
        pattern = re.compile(r"done-%s:(\d+):(\d*)[\r\n]" % token)
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.console(), start)
            if m:
                return int(m.group(1)), int(m.group(2)) if m.group(2) else None
            if time.monotonic() > deadline:
                raise AssertionError("the console shell did not finish %r "
                                     "within %.0f s:\n%s"
                                     % (command, timeout,
                                        self.console()[-3000:]))
            time.sleep(0.05)

    def upload(self, path, data, timeout=REPLY_TIMEOUT):
        """Write @data (bytes or str) to @path in the guest by typing it
        into the console shell, base64-encoded (no quoting, no long lines,
        nothing the shell's line editor would interpret)."""
        if isinstance(data, str):
            data = data.encode()
        text = base64.encodebytes(data).decode()
        status, _ = self.shell_run("base64 -d > %s <<'EOF_UPLOAD'\n"
                                   "%sEOF_UPLOAD" % (path, text),
                                   timeout=timeout)
        assert status == 0, "uploading %s failed (%d)" % (path, status)

    def spawn(self, script, log="/dev/null"):
        """Run the guest's shell script @script in the background, in a
        session (and process group) of its own; returns its pid, which is
        also the group's id, for kill(pid, group=True)."""
        status, pid = self.shell_run("setsid sh %s </dev/null >%s 2>&1 &"
                                     % (script, log))
        assert status == 0 and pid, (status, pid)
        return pid

    def kill(self, pid, group=False, signal="TERM"):
        """Kill process @pid, a child of the console shell, or with @group
        its whole process group (see spawn()), and wait until @pid has
        exited."""
        self.shell_run("kill -%s %s%d 2>/dev/null; wait %d"
                       % (signal, "-" if group else "", pid, pid))

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
                try:
                    self.console_sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass        # QEMU is gone already
                self.console_sock.close()
            self.vm.shutdown(timeout=10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# QEMU's error for a guest-file-read handle that is no integer (an error of
# the agent's would start with "Guest agent: ")
INVALID_HANDLE = "Invalid parameter type for 'handle', expected: integer"


class QMPAgent:
    """The agent's commands through QEMU's main QMP monitor (the
    passthrough), with AgentSocket's cmd(): for agent_exec() and
    agent_read_file()."""

    def __init__(self, vm):
        self.vm = vm

    def cmd(self, name, args=None):
        return self.vm.cmd(name, **(args or {}))


def agent_exec(agent, path, args=(), timeout=REPLY_TIMEOUT):
    """guest-exec with captured output, polled until it exits; @agent is
    an AgentSocket or a QMPAgent.  out-data and err-data are decoded."""
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


def agent_read_file(agent, path, count=65536, limit=64 << 20):
    """The contents of file @path in the guest, read @count bytes at a
    time; fails once more than @limit bytes came without an end."""
    handle = agent.cmd("guest-file-open", {"path": path, "mode": "r"})
    data = bytearray()
    try:
        while True:
            r = agent.cmd("guest-file-read", {"handle": handle,
                                              "count": count})
            data += base64.b64decode(r["buf-b64"])
            if r.get("eof") or r["count"] == 0:
                break
            assert len(data) <= limit, "%s: no end after %d bytes" % (
                path, len(data))
    finally:
        agent.cmd("guest-file-close", {"handle": handle})
    return bytes(data)


def exercise_agent(agent):
    """ping, exec with captured output, file read through @agent (an
    AgentSocket or a QMPAgent); returns guest-info."""
    assert agent.cmd("guest-ping") == {}
    info = agent.cmd("guest-info")
    enabled = [c["name"] for c in info["supported_commands"] if c["enabled"]]
    assert "guest-exec" in enabled and "guest-file-read" in enabled, enabled

    token = secrets.token_hex(8)
    st = agent_exec(agent, "/bin/sh", ["-c", "echo %s | tee /tmp/token" % token])
    assert st["exitcode"] == 0, st
    assert st["out-data"] == (token + "\n").encode(), st

    assert agent_read_file(agent, "/tmp/token") == (token + "\n").encode()
    version = agent_read_file(agent, "/proc/version", count=16)
    assert version.startswith(b"Linux version "), version
    return info


def freeze_agent(guest, stop=True):
    """SIGSTOP (or SIGCONT) qemu-ga in the guest through the console shell,
    and wait until the shell has done it.  The marker is split in the typed
    command so that only the command's output, not its echo, matches."""
    marker = "%s-%s" % ("stopped" if stop else "continued", secrets.token_hex(4))
    half = len(marker) // 2
    guest.shell("kill -%s $(pidof qemu-ga) && echo %s''%s"
                % ("STOP" if stop else "CONT", marker[:half], marker[half:]))
    guest.wait_console(marker)


def proc_memory(pid):
    """VmRSS and VmHWM (peak RSS) of process @pid, in KiB."""
    mem = {}
    with open("/proc/%d/status" % pid, encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                mem[key] = int(value.split()[0])
    return mem


def _no_constant(name):
    raise ValueError("not JSON: %s" % name)


def strict_json(raw):
    """Parse @raw (bytes) as what RFC 8259 allows and nothing more:
    strict UTF-8, no NaN/Infinity/-Infinity (Python's json accepts
    them; QMP must never send them)."""
    return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)


class QMPSocket:
    """A plain QMP client on a unix socket: one JSON line at a time,
    checked with strict_json, so that the tests see the exact bytes QEMU
    sends.  Events are kept in self.events as (monotonic time, event).
    Not thread-safe: use one per thread."""

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.next_id = 0
        greeting, _ = self._message(time.monotonic() + timeout)
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities", timeout=timeout)

    def close(self):
        self.sock.close()

    def _message(self, deadline):
        """The next message: (parsed, raw bytes)."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                if raw.strip():
                    try:
                        return strict_json(raw), raw
                    except ValueError as e:
                        raise AssertionError("QEMU sent QMP output that is "
                                             "not strict JSON (%s): %r"
                                             % (e, raw[:500])) from e
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no QMP message within the deadline")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout as e:
                raise TimeoutError("no QMP message within the deadline") from e
            if not chunk:
                raise EOFError("QEMU closed the QMP connection")
            self.buf += chunk

    def message(self, timeout=REPLY_TIMEOUT):
        """The next message, event or reply, within @timeout seconds;
        raises TimeoutError, or EOFError once QEMU closed the
        connection."""
        return self._message(time.monotonic() + timeout)[0]

    def send(self, name, args=None):
        """Send a command; returns its id for reply()."""
        self.next_id += 1
        msg = {"execute": name, "id": self.next_id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        return self.next_id

    def reply(self, cmd_id, timeout=REPLY_TIMEOUT):
        """The reply to command @cmd_id: (reply, raw bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            msg, raw = self._message(deadline)
            if "event" in msg:
                self.events.append((time.monotonic(), msg))
                continue
            assert msg.get("id") == cmd_id, (cmd_id, msg)
            return msg, raw

    def execute(self, name, args=None, timeout=REPLY_TIMEOUT):
        """Run a command; returns its reply (with "return" or "error")."""
        return self.reply(self.send(name, args), timeout)[0]

    def poll_events(self, timeout=0.0):
        """Read the events that arrive within @timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg, _ = self._message(deadline)
            except TimeoutError:
                return
            assert "event" in msg, msg
            self.events.append((time.monotonic(), msg))


def percentile(values, pct):
    """The @pct percentile (nearest rank) of @values."""
    values = sorted(values)
    if not values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100.0 * len(values)))
    return values[rank - 1]


class LatencyProbe:
    """A thread that runs query-status on its own monitor, back to back,
    and records each round trip (and the events it sees meanwhile).  A
    reply that takes longer than @timeout fails the probe."""

    def __init__(self, path, timeout=REPLY_TIMEOUT):
        self.qmp = QMPSocket(path)
        self.timeout = timeout
        self.latencies = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                rsp = self.qmp.execute("query-status", timeout=self.timeout)
                self.latencies.append(time.monotonic() - t0)
                assert "return" in rsp, rsp
        except Exception as e:  # pylint: disable=broad-except
            self.error = e

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self):
        """Stop; returns a summary dict.  Raises what failed the probe."""
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), "query-status never returned"
        self.qmp.poll_events(0.0)
        self.qmp.close()
        if self.error:
            raise AssertionError("query-status probe failed: %r" % self.error)
        return {"n": len(self.latencies),
                "p99": percentile(self.latencies, 99),
                "max": max(self.latencies) if self.latencies else float("nan"),
                "events": [ev for _, ev in self.qmp.events]}


def wait_for(cond, timeout, what, interval=0.02):
    """Poll @cond until it returns something true (which is returned);
    fail after @timeout seconds, saying that @what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s within %.0f s" % (what, timeout))
        time.sleep(interval)


def concurrent_commands(paths, name, args=None, timeout=REPLY_TIMEOUT):
    """Send command @name at the same moment on each monitor of @paths
    (one QMPSocket and thread each); returns a list of (seconds from
    sending to the reply, reply) in the order of @paths."""
    clients = [QMPSocket(p) for p in paths]
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def run(i):
        try:
            barrier.wait(timeout)
            t0 = time.monotonic()
            rsp = clients[i].execute(name, args, timeout=timeout)
            results[i] = (time.monotonic() - t0, rsp)
        except Exception as e:  # pylint: disable=broad-except
            results[i] = (None, e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(len(clients))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 10)
            assert not t.is_alive(), "%s never returned" % name
    finally:
        for c in clients:
            c.close()
    for _, rsp in results:
        if isinstance(rsp, Exception):
            raise AssertionError("%s on a monitor, with a deadline of %.1f s: "
                                 "%r" % (name, timeout, rsp))
    return results
