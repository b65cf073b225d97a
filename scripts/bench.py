#!/usr/bin/python3
"""make bench: what the QMP passthrough costs, against the agent's own socket.

One run, one guest (the tiny TCG guest of tests/harness), two virtio ports
served by two qemu-ga instances: org.qemu.guest_agent.0 behind -chardev qga
(the passthrough) and org.qemu.guest_agent.1 behind a plain unix socket
chardev (the guest's /init starts the second agent for "qga.second", see
guest/make-guest.sh).  Every path is driven by the same minimal client
(Client below: one JSON request line out, read until one reply line is
complete; no client library in the timing):

  (a) socket       the agent's socket, synced once (0xFF +
                   guest-sync-delimited), then plain requests
  (b) socket+sync  the agent's socket, guest-sync-delimited before every
                   call (timed together with the call; --flush-sync: with
                   a 0xFF first, which qemu-ga answers with an error)
  (c) qmp          the passthrough: guest-* on a QMP monitor
  (d) qmp-bare     QEMU's own monitor round trip: query-status, same monitor

for guest-ping and guest-info, and guest-file-read at 64 KiB, 1 MiB, 4 MiB
and the largest chunk QEMU lets through by default (it clamps counts so
that the reply fits max-reply-size; the clamp is read back from a reply),
in interleaved rounds whose path order rotates.  Then: query-status on one
monitor while another monitor's guest-ping waits on a stopped agent
(SIGSTOP through the console shell) vs idle vs passthrough traffic; 16 QMP
clients x 500 guest-pings at once (each reply's id must be its client's
own; then guest-file-seek with a unique offset per request, whose reply
says which request it answers); QEMU's RSS before/after many commands.

Placement: on a host with as few cores as QEMU has busy threads, the
file-read ratios depend on which CPUs the scheduler gives the client and
QEMU's threads.  A socket client that wakes up for every buffer slows the
main loop's draining of the port, so the guest's buffers reach QEMU in
larger batches and the guest takes fewer used-buffer interrupts, which
cost a TCG guest tens of microseconds each.  --client-cpu pins the client
(the same for every path).

A latency is taken when the reply's line is complete, before it is parsed.
Prints a table with the ratios and writes build/bench/report.md,
build/bench/results.json and PNG plots.  A benchmark, not a test: it
asserts nothing about the numbers, but it fails (exit 1) on functional
errors: error replies, replies with the wrong id, wrong data, timeouts.
"""

import argparse
import base64
import gc
import json
import os
import platform
import random
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests"))

# pylint: disable=wrong-import-position
from harness import (BOOT_TIMEOUT, QEMU, REPLY_TIMEOUT, TOP,  # noqa: E402
                     TREE, Guest, percentile, proc_memory)

OUT = os.path.join(TOP, "build", "bench")
AGENT2_PORT = "org.qemu.guest_agent.1"
FILE = "/tmp/bench.bin"
KiB = 1024
MiB = 1024 * 1024

PATHS = ("socket", "socket+sync", "qmp", "qmp-bare")
LABELS = {
    "socket": "(a) agent socket, synced once",
    "socket+sync": "(b) agent socket, sync before every call",
    "qmp": "(c) QMP passthrough",
    "qmp-bare": "(d) bare QMP round trip (query-status)",
}


class BenchError(Exception):
    """A functional error: the benchmark's numbers would mean nothing."""


def request(name, args=None, rid=None):
    """One request line, as bytes."""
    msg = {"execute": name}
    if args is not None:
        msg["arguments"] = args
    if rid is not None:
        msg["id"] = rid
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def parse(line):
    try:
        return json.loads(line)
    except ValueError as e:
        raise BenchError("not JSON (%s): %r" % (e, line[:300])) from e


def is_event(msg):
    return "event" in msg and "return" not in msg and "error" not in msg


class Client:
    """The minimal JSON-lines client of every path: a unix socket, a
    buffer, one request line out and one reply line in.  Blocking (call)
    or, in run_streams(), non-blocking (feed)."""

    def __init__(self, path, name, timeout=REPLY_TIMEOUT):
        self.name = name
        self.timeout = timeout
        self.buf = b""
        self.events = []
        self.next_id = 0
        self.last_len = 0       # bytes of the last reply line
        deadline = time.monotonic() + 10
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.sock.settimeout(timeout)

    def close(self):
        self.sock.close()

    def new_id(self):
        self.next_id += 1
        return "%s-%d" % (self.name, self.next_id)

    def recv_line(self):
        """The next line (without its newline), blocking."""
        i = self.buf.find(b"\n")
        if i >= 0:
            line, self.buf = self.buf[:i], self.buf[i + 1:]
            return line
        parts = [self.buf]
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout as e:
                raise BenchError("%s: no reply within %.0f s"
                                 % (self.name, self.timeout)) from e
            if not chunk:
                raise BenchError("%s: connection closed by the peer"
                                 % self.name)
            i = chunk.find(b"\n")
            if i >= 0:
                parts.append(chunk[:i])
                self.buf = chunk[i + 1:]
                return b"".join(parts)
            parts.append(chunk)

    def feed(self):
        """The complete lines that can be read now (non-blocking socket)."""
        try:
            chunk = self.sock.recv(1 << 20)
        except BlockingIOError:
            return []
        if not chunk:
            raise BenchError("%s: connection closed by the peer" % self.name)
        self.buf += chunk
        if b"\n" not in chunk:
            return []
        *lines, self.buf = self.buf.split(b"\n")
        return [line for line in lines if line.strip()]

    def reply(self):
        """(time the line was complete, parsed reply), skipping events."""
        while True:
            line = self.recv_line()
            t = time.perf_counter()
            if not line.strip():
                continue
            msg = parse(line)
            if is_event(msg):
                self.events.append(msg)
                continue
            self.last_len = len(line)
            return t, msg

    def call(self, data):
        """Send @data (one request line); returns (seconds, reply)."""
        t0 = time.perf_counter()
        self.sock.sendall(data)
        t, msg = self.reply()
        return t - t0, msg

    # ---- the agent's sync protocol (socket paths)
    def sync_reply(self, sid, flush=False):
        """Read until the reply to guest-sync-delimited @sid."""
        while True:
            line = self.recv_line().lstrip(b"\xff").strip()
            if not line:
                continue
            msg = parse(line)
            if msg.get("return") == sid:
                return
            if flush and "id" not in msg and "JSON parse error" in str(
                    msg.get("error", {}).get("desc")):
                flush = False       # the agent's answer to the 0xFF
                continue
            raise BenchError("%s: stale reply while syncing: %r"
                             % (self.name, line[:300]))

    def sync_call(self, data, flush=False):
        """guest-sync-delimited, then @data: (seconds, reply).  With
        @flush, a 0xFF byte first (qemu-ga answers it with a parse error,
        which sync_reply() skips)."""
        sid = random.randint(1, 2 ** 31)
        sync = (b"\xff" if flush else b"") + request("guest-sync-delimited",
                                                     {"id": sid})
        t0 = time.perf_counter()
        self.sock.sendall(sync)
        self.sync_reply(sid, flush)
        self.sock.sendall(data)
        t, msg = self.reply()
        return t - t0, msg

    def sync(self, timeout):
        """The first handshake: resend with a fresh id on a back-off, skip
        whatever else comes (bytes queued before qemu-ga started)."""
        deadline = time.monotonic() + timeout
        resend = 1.0
        while time.monotonic() < deadline:
            sid = random.randint(1, 2 ** 31)
            self.sock.sendall(b"\xff" + request("guest-sync-delimited",
                                                {"id": sid}))
            until = min(deadline, time.monotonic() + resend)
            resend = min(resend * 2, 8.0)
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    line = self.recv_line().lstrip(b"\xff").strip()
                except BenchError:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("return") == sid:
                    self.sock.settimeout(self.timeout)
                    return
        raise BenchError("%s: no reply to guest-sync-delimited within %.0f s"
                         % (self.name, timeout))

    # ---- QMP
    def qmp_handshake(self):
        _, greeting = self.reply()
        if "QMP" not in greeting:
            raise BenchError("%s: not a QMP greeting: %r"
                             % (self.name, greeting))
        self.cmd("qmp_capabilities")
        return self

    def cmd(self, name, args=None, synced=False):
        """Run a command (untimed use); returns its "return"."""
        rid = self.new_id()
        data = request(name, args, rid)
        _, msg = (self.sync_call if synced else self.call)(data)
        return check_reply(self.name, name, rid, msg)


def check_reply(who, name, rid, msg):
    if msg.get("id") != rid:
        raise BenchError("%s: reply to %s (id %r) has id %r: %r"
                         % (who, name, rid, msg.get("id"), str(msg)[:300]))
    if "return" not in msg:
        raise BenchError("%s: %s failed: %r" % (who, name, str(msg)[:500]))
    return msg["return"]


# ------------------------------------------------------------ closed loops
class Stream:
    """A closed-loop client for run_streams(): at most one request of its
    own outstanding.  @make(seq) returns (id, request bytes, check), where
    check(return value) raises BenchError when the reply is wrong."""

    def __init__(self, client, make, n=None):
        self.client = client
        self.make = make
        self.n = n              # None: until run_streams()'s duration
        self.seq = 0
        self.pending = None     # (id, check, t0)
        self.lat = []
        self.done_at = None     # seconds from the start to its last reply


def run_streams(streams, duration=None):
    """Run @streams at once in this thread (one selector, non-blocking
    sockets) until each has sent n requests or @duration seconds passed;
    waits for every outstanding reply.  Returns the seconds it took."""
    sel = selectors.DefaultSelector()
    t_start = time.perf_counter()
    deadline = t_start + duration if duration else None

    def issue(s):
        if ((s.n is not None and s.seq >= s.n) or
                (deadline is not None and time.perf_counter() >= deadline)):
            s.done_at = time.perf_counter() - t_start
            return False
        rid, data, check = s.make(s.seq)
        s.seq += 1
        s.pending = (rid, check, time.perf_counter())
        s.client.sock.sendall(data)
        return True

    for s in streams:
        s.client.sock.setblocking(False)
        sel.register(s.client.sock, selectors.EVENT_READ, s)
    try:
        active = 0
        for s in streams:
            active += issue(s)
        while active:
            events = sel.select(timeout=REPLY_TIMEOUT)
            if not events:
                raise BenchError("no reply within %.0f s on %s"
                                 % (REPLY_TIMEOUT,
                                    [s.client.name for s in streams
                                     if s.pending]))
            for key, _ in events:
                s = key.data
                for line in s.client.feed():
                    t = time.perf_counter()
                    msg = parse(line)
                    if is_event(msg):
                        s.client.events.append(msg)
                        continue
                    if s.pending is None:
                        raise BenchError("%s: a reply nobody asked for: %r"
                                         % (s.client.name, line[:300]))
                    rid, check, t0 = s.pending
                    if msg.get("id") != rid:
                        raise BenchError(
                            "%s: misrouted or reordered reply: expected id "
                            "%r, got %r" % (s.client.name, rid,
                                            str(msg)[:300]))
                    if "return" not in msg:
                        raise BenchError("%s: error reply: %r"
                                         % (s.client.name, str(msg)[:500]))
                    check(msg["return"])
                    s.lat.append(t - t0)
                    s.pending = None
                    if not issue(s):
                        active -= 1
    finally:
        sel.close()
        for s in streams:
            s.client.sock.setblocking(True)
            s.client.sock.settimeout(s.client.timeout)
    return time.perf_counter() - t_start


def expect(value, what):
    def check(ret):
        if ret != value:
            raise BenchError("%s: expected %r, got %r"
                             % (what, value, str(ret)[:300]))
    return check


def has_key(key, what):
    def check(ret):
        if not isinstance(ret, dict) or key not in ret:
            raise BenchError("%s: no %r in %r" % (what, key, str(ret)[:300]))
    return check


def cycle(client, name, args, check):
    """make() for a Stream: the same command again and again."""
    def make(_seq):
        rid = client.new_id()
        return rid, request(name, args, rid), check
    return make


# ------------------------------------------------------------ statistics
def summary(lat):
    return {"n": len(lat), "median": statistics.median(lat),
            "p99": percentile(lat, 99), "min": min(lat), "max": max(lat)}


def ms(x):
    return "%.3f" % (x * 1e3)


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.res = {"options": vars(opts), "argv": " ".join(sys.argv[1:])}
        self.raw = {}           # (command, path) -> latencies, for the CDFs
        self.tmp = None
        self.g = None
        self.agent = None       # Client on the second agent's socket
        self.qmp = None         # Client on QMP monitor 0
        self.mons = []          # Clients on QMP monitors 1..N
        self.data = b""
        self.pid = None         # QEMU's
        self.handles = {}       # path -> guest-file-open handle of FILE
        self.pos = {}           # path -> the handle's position

    def n(self, count):
        return max(1, int(round(count * self.opts.scale)))

    # ---------------------------------------------------------- guest
    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="qga-bench-")
        sock2 = os.path.join(self.tmp, "qga1.sock")
        nmon = 1 + max(self.opts.clients, 4)
        extra = ["-chardev", "socket,id=qga1,path=%s,server=on,wait=off"
                 % sock2,
                 "-device", "virtserialport,id=qgaport1,chardev=qga1,"
                 "name=%s" % AGENT2_PORT]
        if self.opts.memory:
            extra += ["-m", str(self.opts.memory)]
        self.g = Guest("current", agent="qga", shell=True, monitors=nmon,
                       append="qga.second", extra_args=extra)
        t0 = time.monotonic()
        self.g.start()
        self.agent = Client(sock2, "agent")
        self.g.wait_agent()
        self.agent.sync(BOOT_TIMEOUT)
        self.res["boot_s"] = time.monotonic() - t0
        self.qmp = Client(self.g.monitors[0], "qmp0").qmp_handshake()
        self.mons = [Client(p, "qmp%d" % (i + 1)).qmp_handshake()
                     for i, p in enumerate(self.g.monitors[1:])]
        self.pid = self.g.vm.get_pid()
        # both agents answer, and they are two different processes
        self.agent.cmd("guest-ping")
        self.qmp.cmd("guest-ping")
        info = self.qmp.cmd("guest-info")
        self.res["guest_info_bytes"] = {"qmp": self.qmp.last_len}
        self.agent.cmd("guest-info")
        self.res["guest_info_bytes"]["socket"] = self.agent.last_len
        self.res["qemu_ga_version"] = info["version"]
        self.make_file()
        ver = self.qmp.cmd("query-version")
        self.res["qemu_version"] = ("%(major)d.%(minor)d.%(micro)d"
                                    % ver["qemu"]) + ver["package"]

    def stop(self):
        for c in [self.agent, self.qmp] + self.mons:
            if c:
                c.close()
        if self.g:
            self.g.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def shell(self, command):
        status, _ = self.g.shell_run(command)
        if status != 0:
            raise BenchError("in the guest, %r failed (%d)"
                             % (command, status))

    def agent0_signal(self, sig):
        """SIGSTOP/SIGCONT the qemu-ga behind -chardev qga (only it: the
        other one serves org.qemu.guest_agent.1)."""
        self.shell("set --; for p in $(pidof qemu-ga); do grep -q "
                   "'guest_agent[.]0' /proc/$p/cmdline && set -- \"$@\" $p; "
                   "done; [ $# = 1 ] && kill -%s $1" % sig)

    # ---------------------------------------------------------- the paths
    def timed(self, path, name, args=None):
        """One timed call of @name on @path; returns (seconds, return)."""
        if path in ("socket", "socket+sync"):
            client = self.agent
        else:
            client = self.qmp
        if path == "qmp-bare":
            name, args = "query-status", None
        rid = client.new_id()
        data = request(name, args, rid)
        if path == "socket+sync":
            t, msg = client.sync_call(data, flush=self.opts.flush_sync)
        else:
            t, msg = client.call(data)
        return t, check_reply(path, name, rid, msg)

    def rounds(self, key, paths, total, body):
        """@total timed calls per path of @body(path) -> seconds, in
        rounds whose path order rotates; returns {path: latencies}."""
        nrounds = max(1, min(self.opts.rounds, total))
        lat = {p: [] for p in paths}
        gc.collect()
        gc.disable()
        try:
            for r in range(nrounds):
                order = paths[r % len(paths):] + paths[:r % len(paths)]
                for p in order:
                    k = (total * (r + 1)) // nrounds - (total * r) // nrounds
                    for _ in range(k):
                        lat[p].append(body(p))
        finally:
            gc.enable()
        for p in paths:
            self.raw[(key, p)] = lat[p]
        return lat

    def bench_small(self):
        """guest-ping and guest-info on every path."""
        calls = self.n(self.opts.calls)
        checks = {"guest-ping": lambda r: r == {},
                  "guest-info": lambda r: "supported_commands" in r,
                  "query-status": lambda r: r.get("running") is True}
        out = {}
        for name, paths in (("guest-ping", PATHS),
                            ("guest-info", PATHS[:3])):
            def body(p, name=name):
                t, ret = self.timed(p, name)
                cname = "query-status" if p == "qmp-bare" else name
                if not checks[cname](ret):
                    raise BenchError("%s on %s: unexpected return %r"
                                     % (cname, p, str(ret)[:300]))
                return t
            for p in paths:         # warm-up, not recorded
                for _ in range(20):
                    body(p)
            lat = self.rounds(name, list(paths), calls, body)
            out[name] = {p: summary(v) for p, v in lat.items()}
        self.res["small"] = out

    # ---------------------------------------------------------- file reads
    def make_file(self):
        """FILE in the guest: random bytes written through the socket
        agent (1 MiB per guest-file-write), a little larger than the
        default clamp."""
        size = self.opts.file_mib * MiB
        self.data = random.Random(13).randbytes(size)
        h = self.agent.cmd("guest-file-open", {"path": FILE, "mode": "w"})
        for off in range(0, size, MiB):
            chunk = self.data[off:off + MiB]
            r = self.agent.cmd("guest-file-write", {
                "handle": h, "buf-b64": base64.b64encode(chunk).decode()})
            if r["count"] != len(chunk):
                raise BenchError("guest-file-write wrote %d of %d bytes"
                                 % (r["count"], len(chunk)))
        self.agent.cmd("guest-file-close", {"handle": h})

    def open_file(self):
        self.handles = {
            "socket": self.agent.cmd("guest-file-open",
                                     {"path": FILE, "mode": "r"}),
            "qmp": self.qmp.cmd("guest-file-open",
                                {"path": FILE, "mode": "r"})}
        self.pos = {"socket": None, "qmp": None}

    def read_once(self, path, count):
        """Seek (untimed) when needed, then one timed guest-file-read of
        @count bytes; checks the data.  Returns seconds."""
        client = self.agent if path == "socket" else self.qmp
        h = self.handles[path]
        pos = self.pos[path]
        if pos is None or pos + count > len(self.data):
            r = client.cmd("guest-file-seek",
                           {"handle": h, "offset": 0, "whence": "set"})
            if r["position"] != 0:
                raise BenchError("guest-file-seek: %r" % r)
            pos = 0
        t, ret = self.timed(path, "guest-file-read",
                            {"handle": h, "count": count})
        got = base64.b64decode(ret["buf-b64"])
        if ret["count"] != count or len(got) != count:
            raise BenchError("guest-file-read on %s: %d bytes (%d decoded) "
                             "of %d" % (path, ret["count"], len(got), count))
        if got != self.data[pos:pos + count]:
            raise BenchError("guest-file-read on %s: wrong data at %d"
                             % (path, pos))
        self.pos[path] = pos + count
        return t

    def find_clamp(self):
        """QEMU's default clamp of guest-file-read counts: ask for more
        than the file holds through QMP and see how much comes back."""
        self.qmp.cmd("guest-file-seek", {"handle": self.handles["qmp"],
                                         "offset": 0, "whence": "set"})
        ret = self.qmp.cmd("guest-file-read", {"handle": self.handles["qmp"],
                                               "count": len(self.data) + 1})
        self.pos["qmp"] = None
        got = base64.b64decode(ret["buf-b64"])
        if ret["count"] != len(got) or got != self.data[:len(got)]:
            raise BenchError("guest-file-read through QMP: wrong data")
        if ret["count"] >= len(self.data):
            raise BenchError("QEMU did not clamp a %d-byte guest-file-read; "
                             "make the file larger (--file-mib)"
                             % (len(self.data) + 1))
        return ret["count"]

    def bench_reads(self):
        self.open_file()
        clamp = self.find_clamp()
        self.res["clamp"] = clamp
        # find_clamp() made agent 0 read the largest chunk.  Agent 1 reads
        # it too, so that both agents' malloc has seen the same largest
        # blocks: glibc raises its mmap threshold when it frees a large
        # one, and until then an agent maps and unmaps the buffers of
        # every large reply.  Without this, the same 64 KiB read over the
        # same kind of socket took 25-34 % longer on the agent that had not
        # made a large allocation yet.
        self.read_once("socket", clamp)
        counts = [int(c) for c in self.opts.reads.split(",")]
        sizes = [64 * KiB, MiB, 4 * MiB, clamp]
        out = {}
        for size, total in zip(sizes, counts):
            paths = ["socket", "qmp"]
            for p in paths:         # warm-up
                self.read_once(p, size)
            lat = self.rounds("read-%d" % size, paths, self.n(total),
                              lambda p, s=size: self.read_once(p, s))
            out[size] = {p: dict(summary(v),
                                 mbps=size / statistics.median(v) / 1e6)
                         for p, v in lat.items()}
        for p in ("socket", "qmp"):
            client = self.agent if p == "socket" else self.qmp
            client.cmd("guest-file-close", {"handle": self.handles[p]})
        self.res["reads"] = out

    # ---------------------------------------------------------- isolation
    def probe(self, seconds, others=()):
        """query-status back to back on monitor 2 for @seconds, alongside
        @others (Streams); returns the probe's latencies."""
        mon = self.mons[1]
        s = Stream(mon, cycle(mon, "query-status", None,
                              has_key("running", "query-status")))
        extra = list(others)
        for o in extra:
            o.n = None
        gc.collect()
        gc.disable()
        try:
            run_streams([s] + extra, duration=seconds)
        finally:
            gc.enable()
        return s.lat

    def bench_isolation(self):
        secs = self.opts.probe_seconds
        res = {}
        lat = {"idle": self.probe(secs)}
        victim = self.mons[0]
        load = Stream(victim, cycle(victim, "guest-info", None,
                                    has_key("version", "guest-info")))
        lat["guest-info traffic on another monitor"] = self.probe(
            secs, [load])
        res["traffic_calls"] = len(load.lat)
        # the control: the same guest load, without the passthrough
        load = Stream(self.agent, cycle(self.agent, "guest-info", None,
                                        has_key("version", "guest-info")))
        lat["guest-info traffic on the agent socket (control)"] = \
            self.probe(secs, [load])
        # a guest-ping that waits on the stopped agent
        self.agent0_signal("STOP")
        try:
            rid = victim.new_id()
            t_stuck = time.perf_counter()
            victim.sock.sendall(request("guest-ping", None, rid))
            time.sleep(0.5)
            st = self.mons[2].cmd("query-guest-agent")
            if st["in-flight"] != 1:
                raise BenchError("the agent is stopped but guest-ping is not "
                                 "in flight: %r" % st)
            victim.sock.setblocking(False)
            try:
                early = victim.feed()
            finally:
                victim.sock.setblocking(True)
                victim.sock.settimeout(victim.timeout)
            if early:
                raise BenchError("guest-ping answered by a stopped agent: %r"
                                 % early)
            self.agent.cmd("guest-ping")    # the other agent still answers
            lat["guest-ping waiting on a stopped agent"] = self.probe(secs)
        finally:
            self.agent0_signal("CONT")
        t, msg = victim.reply()
        check_reply(victim.name, "guest-ping", rid, msg)
        res["stuck_ping_s"] = t - t_stuck
        res["probes"] = {k: summary(v) for k, v in lat.items()}
        for k, v in lat.items():
            self.raw[("probe", k)] = v
        self.res["isolation"] = res

    # ---------------------------------------------------------- clients
    def bench_clients(self):
        nc, calls = self.opts.clients, self.n(self.opts.client_calls)
        one = Stream(self.mons[0], cycle(self.mons[0], "guest-ping", None,
                                         expect({}, "guest-ping")), calls)
        t_one = run_streams([one])
        streams = [Stream(m, cycle(m, "guest-ping", None,
                                   expect({}, "guest-ping")), calls)
                   for m in self.mons[:nc]]
        gc.collect()
        gc.disable()
        try:
            t_all = run_streams(streams)
        finally:
            gc.enable()
        for s in streams:
            if len(s.lat) != calls:
                raise BenchError("%s got %d replies of %d"
                                 % (s.client.name, len(s.lat), calls))
        done = sorted(s.done_at for s in streams)
        lat = [x for s in streams for x in s.lat]
        self.raw[("clients", "all")] = lat
        self.raw[("clients", "one")] = one.lat
        self.raw[("clients", "done")] = done
        # routing by content: guest-file-seek to an offset unique to the
        # request; the reply's position says which request it answers
        seeks = max(1, calls // 10)
        handles = [m.cmd("guest-file-open", {"path": FILE, "mode": "r"})
                   for m in self.mons[:nc]]

        def seeker(i, m):
            def make(seq):
                off = i * 100000 + seq + 1
                rid = m.new_id()
                return rid, request("guest-file-seek", {
                    "handle": handles[i], "offset": off,
                    "whence": "set"}, rid), expect(
                        {"position": off, "eof": False},
                        "%s guest-file-seek" % m.name)
            return make
        seek_streams = [Stream(m, seeker(i, m), seeks)
                        for i, m in enumerate(self.mons[:nc])]
        run_streams(seek_streams)
        for m, h in zip(self.mons[:nc], handles):
            m.cmd("guest-file-close", {"handle": h})
        self.res["clients"] = {
            "clients": nc, "calls": calls, "seeks": seeks,
            "one_s": t_one, "one_rate": calls / t_one,
            "one": summary(one.lat),
            "all_s": t_all, "all_rate": nc * calls / t_all,
            "all": summary(lat),
            "done_first": done[0], "done_median": statistics.median(done),
            "done_last": done[-1]}

    # ---------------------------------------------------------- memory
    def bench_rss(self):
        total = self.n(self.opts.rss_commands)
        mons = self.mons[:4]
        steps = 20
        samples = [(0, proc_memory(self.pid))]
        done = 0
        t0 = time.perf_counter()
        for step in range(steps):
            want = (total * (step + 1)) // steps - done
            per = [want // len(mons) + (1 if i < want % len(mons) else 0)
                   for i in range(len(mons))]

            def mix(m):
                ping = cycle(m, "guest-ping", None, expect({}, "guest-ping"))
                info = cycle(m, "guest-info", None,
                             has_key("version", "guest-info"))

                def make(seq):
                    return (info if seq % 10 == 9 else ping)(seq)
                return make
            streams = [Stream(m, mix(m), k) for m, k in zip(mons, per) if k]
            run_streams(streams)
            done += want
            samples.append((done, proc_memory(self.pid)))
        t = time.perf_counter() - t0
        self.res["rss"] = {"commands": total, "seconds": t,
                           "rate": total / t, "samples": samples,
                           "before_kib": samples[0][1]["VmRSS"],
                           "after_kib": samples[-1][1]["VmRSS"],
                           "hwm_kib": samples[-1][1]["VmHWM"]}

    # ---------------------------------------------------------- run
    def run(self):
        t0 = time.monotonic()
        phases = [("guest-ping / guest-info", self.bench_small),
                  ("isolation", self.bench_isolation),
                  ("%d clients" % self.opts.clients, self.bench_clients),
                  ("RSS", self.bench_rss),
                  ("guest-file-read", self.bench_reads)]
        self.start()
        if self.opts.client_cpu is not None:
            # After QEMU started, so that only the client is pinned
            os.sched_setaffinity(0, {self.opts.client_cpu})
        self.res["phases_s"] = {}
        counters = ("timeouts", "invalid-replies", "stale-replies")
        before = self.qmp.cmd("query-guest-agent")
        self.res["query-guest-agent-start"] = before
        for what, fn in phases:
            t = time.monotonic()
            print("bench: %s ..." % what, flush=True)
            fn()
            self.res["phases_s"][what] = time.monotonic() - t
            # nothing went wrong on the way: no timeouts, no invalid or
            # stale replies (counted since boot)
            st = self.qmp.cmd("query-guest-agent")
            for k in counters:
                if st[k] != before[k]:
                    raise BenchError("query-guest-agent after %s: %s %d -> %d"
                                     % (what, k, before[k], st[k]))
        self.res["query-guest-agent"] = st
        self.res["total_s"] = time.monotonic() - t0


# ------------------------------------------------------------ output
def env_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    head = subprocess.run(["git", "-C", TREE, "log", "-1",
                           "--format=%h %s"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True,
                          check=False).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "qemu": QEMU,
            "tree_head": head, "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def tables(res):
    """The report's tables as (title, header, rows) and the ratios."""
    sm = res["small"]
    out = []
    rows = []
    for p in PATHS:
        row = [LABELS[p]]
        for name in ("guest-ping", "guest-info"):
            s = sm[name].get(p)
            row.append("%s / %s" % (ms(s["median"]), ms(s["p99"]))
                       if s else "")
        rows.append(row)
    out.append(("Round trip, ms (median / p99)",
                ["path", "guest-ping (n=%d)" % sm["guest-ping"]["qmp"]["n"],
                 "guest-info (n=%d)" % sm["guest-info"]["qmp"]["n"]], rows))

    def med(name, p):
        return sm[name][p]["median"]
    bare = med("guest-ping", "qmp-bare")
    bare_p99 = sm["guest-ping"]["qmp-bare"]["p99"]
    rows = []
    for name in ("guest-ping", "guest-info"):
        q = sm[name]["qmp"]
        rows.append([name,
                     "%.2f" % (q["median"] / med(name, "socket")),
                     "%.2f" % (q["median"] / med(name, "socket+sync")),
                     "%.2f" % (q["median"] / (med(name, "socket") + bare)),
                     "%.2f" % (q["p99"] / (med(name, "socket") + bare)),
                     "%.2f" % (q["p99"] / (sm[name]["socket"]["p99"]
                                           + bare_p99)),
                     ms(q["median"] - med(name, "socket") - bare)])
    out.append(("Ratios of the passthrough (c), medians unless said",
                ["command", "(c)/(a)", "(c)/(b)", "(c)/((a)+(d))",
                 "p99(c)/((a)+(d))", "p99(c)/(p99(a)+p99(d))",
                 "(c)-(a)-(d), ms"], rows))

    rd = res["reads"]
    rows = []
    for size in sorted(rd, key=int):
        s, q = rd[size]["socket"], rd[size]["qmp"]
        rows.append([size_name(int(size), res["clamp"]), str(s["n"]),
                     "%.2f" % s["mbps"], "%.2f" % q["mbps"],
                     "%.2f" % (q["mbps"] / s["mbps"]),
                     "%s / %s" % (ms(s["median"]), ms(s["p99"])),
                     "%s / %s" % (ms(q["median"]), ms(q["p99"]))])
    out.append(("guest-file-read throughput (MB/s = 10^6 B/s, from the "
                "median), (c) vs (a)",
                ["chunk", "n", "socket MB/s", "QMP MB/s", "QMP/socket",
                 "socket ms med/p99", "QMP ms med/p99"], rows))

    iso = res["isolation"]["probes"]
    rows = [[k, str(v["n"]), ms(v["median"]), ms(v["p99"]), ms(v["max"])]
            for k, v in iso.items()]
    out.append(("query-status on another monitor (ms); the guest-ping on "
                "the stopped agent got its reply %.1f s after it was sent, "
                "once the agent was continued"
                % res["isolation"]["stuck_ping_s"],
                ["while", "n", "median", "p99", "max"], rows))

    c = res["clients"]
    rows = [["1 client", "%d" % c["calls"], "%.2f" % c["one_s"],
             "%.0f" % c["one_rate"], ms(c["one"]["median"]),
             ms(c["one"]["p99"]), "", ""],
            ["%d clients at once" % c["clients"],
             "%d x %d" % (c["clients"], c["calls"]), "%.2f" % c["all_s"],
             "%.0f (%.2fx)" % (c["all_rate"], c["all_rate"] / c["one_rate"]),
             ms(c["all"]["median"]), ms(c["all"]["p99"]),
             "%.2f / %.2f / %.2f" % (c["done_first"], c["done_median"],
                                     c["done_last"]),
             "0 of %d (+ %d x %d seeks by content)"
             % (c["clients"] * c["calls"], c["clients"], c["seeks"])]]
    out.append(("guest-ping from many QMP clients at once",
                ["clients", "pings", "s", "pings/s", "latency median ms",
                 "p99 ms", "done first / median / last s", "misrouted"],
                rows))

    r = res["rss"]
    rows = [["%d" % r["commands"], "%.1f" % r["seconds"], "%.0f" % r["rate"],
             "%d" % r["before_kib"], "%d" % r["after_kib"],
             "%+d" % (r["after_kib"] - r["before_kib"]), "%d" % r["hwm_kib"]]]
    out.append(("QEMU's RSS across passthrough commands (9 guest-ping : 1 "
                "guest-info, 4 monitors)",
                ["commands", "s", "per s", "VmRSS before KiB",
                 "after KiB", "delta KiB", "VmHWM KiB"], rows))
    return out


def size_name(size, clamp):
    if size == clamp:
        return "%d B (clamp, %.2f MiB)" % (size, size / MiB)
    if size >= MiB:
        return "%d MiB" % (size // MiB)
    return "%d KiB" % (size // KiB)


def text_table(title, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = [title]
    for row in [header] + rows:
        lines.append("  " + "  ".join(str(x).ljust(w)
                                      for x, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def md_table(title, header, rows):
    lines = ["### " + title, "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def cdf(ax, values, label):
    v = sorted(x * 1e3 for x in values)
    n = len(v)
    ax.plot(v, [(i + 1) / n for i in range(n)], label=label,
            drawstyle="steps-post")


def logx(ax):
    """A log x axis with plain numbers at 1, 2, 5 x 10^k."""
    # pylint: disable=import-outside-toplevel
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "%g" % v))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plots(bench, res):
    # pylint: disable=import-outside-toplevel
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, name in zip(axes, ("guest-ping", "guest-info")):
        for p in PATHS:
            if (name, p) in bench.raw:
                cdf(ax, bench.raw[(name, p)], LABELS[p])
        sm = res["small"][name]
        s = sm["socket"]["median"] + res["small"]["guest-ping"]["qmp-bare"][
            "median"]
        ax.axvline(s * 1e3, color="grey", linestyle=":",
                   label="median (a) + median (d)")
        logx(ax)
        ax.set_xlabel("round trip, ms (log)")
        ax.set_ylabel("fraction of calls")
        ax.set_title("%s: latency CDF, n=%d per path"
                     % (name, sm["qmp"]["n"]))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    files.append(save(fig, "latency-cdf.png"))

    rd = res["reads"]
    sizes = sorted(rd, key=int)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    x = range(len(sizes))
    w = 0.38
    sock = [rd[s]["socket"]["mbps"] for s in sizes]
    qmp = [rd[s]["qmp"]["mbps"] for s in sizes]
    ax.bar([i - w / 2 for i in x], sock, w, label=LABELS["socket"])
    ax.bar([i + w / 2 for i in x], qmp, w, label=LABELS["qmp"])
    for i, (a, b) in enumerate(zip(sock, qmp)):
        ax.text(i + w / 2, b, "%.2fx" % (b / a), ha="center", va="bottom",
                fontsize=9)
    names = [size_name(int(s), res["clamp"]).replace(" (clamp, ", "\n(clamp, ")
             for s in sizes]
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("MB/s (10^6 B/s, from the median call)")
    ax.set_title("guest-file-read throughput per chunk size")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[1]
    for p in ("socket", "qmp"):
        for i, s in enumerate(sizes):
            lat = bench.raw[("read-%s" % s, p)]
            tput = [int(s) / t / 1e6 for t in lat]
            ax.scatter([i + (-w / 2 if p == "socket" else w / 2)] * len(tput),
                       tput, s=8, alpha=0.5,
                       color="C0" if p == "socket" else "C1",
                       label=LABELS[p] if i == 0 else None)
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("MB/s of each call")
    ax.set_title("guest-file-read: every call")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    files.append(save(fig, "file-read-throughput.png"))

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    for k in res["isolation"]["probes"]:
        cdf(ax, bench.raw[("probe", k)], k)
    logx(ax)
    ax.set_xlabel("query-status round trip, ms (log)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("query-status on another monitor, %.0f s each"
                 % bench.opts.probe_seconds)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[0][1]
    c = res["clients"]
    cdf(ax, bench.raw[("clients", "one")], "1 client alone")
    cdf(ax, bench.raw[("clients", "all")],
        "%d clients at once (all their calls)" % c["clients"])
    logx(ax)
    ax.set_xlabel("guest-ping round trip through QMP, ms (log)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("%d QMP clients x %d guest-ping: latency"
                 % (c["clients"], c["calls"]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1][0]
    done = bench.raw[("clients", "done")]
    ax.bar(range(1, len(done) + 1), done, color="C2")
    ax.axhline(c["one_s"] * c["clients"], color="grey", linestyle=":",
               label="%d x one client's time alone" % c["clients"])
    ax.set_xlabel("client (sorted by completion)")
    ax.set_ylabel("s from the common start to its last reply")
    ax.set_title("%d QMP clients x %d guest-ping: completion times"
                 % (c["clients"], c["calls"]))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_ylim(0, max(done + [c["one_s"] * c["clients"]]) * 1.25)
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1][1]
    r = res["rss"]
    ax.plot([n for n, _ in r["samples"]],
            [m["VmRSS"] / 1024 for _, m in r["samples"]], marker="o",
            label="VmRSS")
    ax.plot([n for n, _ in r["samples"]],
            [m["VmHWM"] / 1024 for _, m in r["samples"]], linestyle="--",
            label="VmHWM")
    ax.set_xlabel("passthrough commands (9 guest-ping : 1 guest-info)")
    ax.set_ylabel("MiB")
    ax.set_title("QEMU's RSS")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(save(fig, "isolation-clients-rss.png"))
    plt.close("all")
    return files


def save(fig, name):
    path = os.path.join(OUT, name)
    fig.savefig(path, dpi=100)
    return path


def write_report(bench, res, files, wall):
    env = env_info()
    res["env"] = env
    lines = ["# make bench: the QMP passthrough against the agent's socket",
             "",
             "%s; %s, %d cores; QEMU %s (`%s`), tree `%s`; qemu-ga %s; "
             "TCG guest booted in %.1f s; bench wall time %.0f s."
             % (env["date"], env["cpu"], env["cores"], res["qemu_version"],
                os.path.relpath(env["qemu"], TOP), env["tree_head"],
                res["qemu_ga_version"], res["boot_s"], wall),
             "",
             "One guest, two qemu-ga instances: org.qemu.guest_agent.0 "
             "behind `-chardev qga`, org.qemu.guest_agent.1 behind a unix "
             "socket chardev.  The same minimal JSON-lines client for every "
             "path; a latency ends when the reply's line is complete (before "
             "parsing).  Interleaved rounds (%d), path order rotated per "
             "round; 20 warm-up calls per path are not counted; before the "
             "guest-file-read rounds both agents read the largest chunk "
             "once, so that their heaps start alike.  Options: "
             "`%s`." % (bench.opts.rounds, res.get("argv") or "(defaults)"),
             ""]
    for t in tables(res):
        lines += [md_table(*t), ""]
    lines += ["### Plots", ""]
    for f in files:
        lines += ["![%s](%s)" % (os.path.basename(f), os.path.basename(f)),
                  ""]
    with open(os.path.join(OUT, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    raw = {"%s|%s" % k: v for k, v in bench.raw.items()}
    with open(os.path.join(OUT, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"summary": res, "raw": raw}, f, indent=1, default=str)


def replot():
    with open(os.path.join(OUT, "results.json"), encoding="utf-8") as f:
        saved = json.load(f)
    res = saved["summary"]
    bench = argparse.Namespace(
        opts=argparse.Namespace(**res["options"]),
        raw={tuple(k.split("|", 1)): v for k, v in saved["raw"].items()})
    files = plots(bench, res)
    write_report(bench, res, files, res["wall_s"])
    for t in tables(res):
        print(text_table(*t))
        print()
    return 0


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--calls", type=int, default=1500,
                    help="guest-ping / guest-info calls per path (1500)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="interleaved rounds (10)")
    ap.add_argument("--reads", default="200,40,20,6",
                    help="guest-file-read calls per path at 64 KiB, 1 MiB, "
                    "4 MiB and the clamp (200,40,20,6)")
    ap.add_argument("--file-mib", type=int, default=25,
                    help="size of the file read, MiB; must exceed the clamp "
                    "(25)")
    ap.add_argument("--probe-seconds", type=float, default=4.0,
                    help="seconds of query-status per isolation case (4)")
    ap.add_argument("--clients", type=int, default=16,
                    help="concurrent QMP clients (16)")
    ap.add_argument("--client-calls", type=int, default=500,
                    help="guest-pings per client (500)")
    ap.add_argument("--rss-commands", type=int, default=100000,
                    help="passthrough commands between the RSS samples "
                    "(100000)")
    ap.add_argument("--flush-sync", action="store_true",
                    help="(b): a 0xFF byte before each guest-sync-delimited "
                    "too (qemu-ga answers it with a parse error reply)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every count by this (e.g. 0.1 for a "
                    "quick run)")
    ap.add_argument("--memory", type=int, default=512,
                    help="guest RAM, MiB (512: qemu-ga needs ~5x the chunk "
                    "for the largest read; 0: the harness's 256)")
    ap.add_argument("--client-cpu", type=int, metavar="CPU",
                    help="pin the client (this process, once QEMU runs) to "
                    "host CPU number CPU; default: let the scheduler place "
                    "it.  On a small host the file-read ratios depend on "
                    "where the client runs: see 'Placement' above")
    ap.add_argument("--replot", action="store_true",
                    help="no benchmark: redo the tables, report and plots "
                    "from build/bench/results.json")
    opts = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if opts.replot:
        return replot()
    t0 = time.monotonic()
    bench = Bench(opts)
    try:
        bench.run()
    except BenchError as e:
        print("bench: FAILED: %s" % e, file=sys.stderr)
        if bench.g:
            print("guest console (tail):\n%s" % bench.g.console()[-2000:],
                  file=sys.stderr)
        return 1
    finally:
        bench.stop()
    res = bench.res
    files = plots(bench, res)
    wall = res["wall_s"] = time.monotonic() - t0
    write_report(bench, res, files, wall)
    print()
    for t in tables(res):
        print(text_table(*t))
        print()
    print("bench: %.0f s; wrote %s and %s" % (
        wall, os.path.relpath(os.path.join(OUT, "report.md"), TOP),
        ", ".join(os.path.relpath(f, TOP) for f in files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
