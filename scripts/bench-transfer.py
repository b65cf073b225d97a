#!/usr/bin/python3
"""Where a guest-file-read's time goes, per path: a profiling aid for #13.

Starts the guest of make bench (two ports, two qemu-ga: org.qemu.guest_agent.0
behind -chardev qga, org.qemu.guest_agent.1 behind a unix socket chardev),
puts perf uprobes on QEMU's virtio-serial device (hw/char/virtio-console.c
flush_buf(): each buffer the guest sends; hw/char/virtio-serial-bus.c
virtio_serial_write(): the request going into the guest; hw/virtio/
virtio-pci.c virtio_pci_notify(): each interrupt QEMU raises), alternates
guest-file-reads of --kib KiB on the two paths with bench.py's client, and
prints per path:

  request -> first byte   from the request reaching the port to the guest's
                          first buffer (the agent reads and encodes)
  transfer                from the guest's first buffer to its last
  buffers, interrupts     per read (interrupts while the reply streams)
  client                  what bench.py's client measures for the read

Needs perf (Debian: apt-get install linux-perf) and root, and a QEMU built
with debug info (scripts/build.sh builds one).  The probes go in a group of
their own (qga_transfer) and are removed at the end, also on failure.  A
profiling aid, not a test or a benchmark of record: the uprobes slow every
buffer by a few microseconds, on both paths alike.
"""

import argparse
import errno
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
import bench  # noqa: E402

GROUP = "qga_transfer"
PROBES = [("flush_buf", "flush_buf port->id len"),
          ("write", "virtio_serial_write port->id size"),
          ("notify", "virtio_pci_notify vector")]
PORT_NAMES = {1: "qmp (-chardev qga)", 2: "socket"}
PATH_PORT = {"qmp": 1, "socket": 2}
EVENT = re.compile(r"\s*([\d.]+):\s+%s:(\w+):\s+\(\w+\)\s*(.*)" % GROUP)


def perf(*args, check=True):
    return subprocess.run(["perf"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, check=check)


def add_probes():
    added = []
    try:
        for name, spec in PROBES:
            perf("probe", "-q", "-x", bench.QEMU,
                 "--add", "%s:%s=%s" % (GROUP, name, spec))
            added.append(name)
    except subprocess.CalledProcessError as e:
        remove_probes(added)
        sys.exit("bench-transfer: perf probe failed (is %s built with debug "
                 "info?):\n%s" % (bench.QEMU, e.stdout))
    return added


def remove_probes(added):
    for name in added:
        perf("probe", "-q", "-d", "%s:%s" % (GROUP, name), check=False)


def open_ctl(path, rec):
    """Open perf record's control fifo for writing once perf has it open
    (without a reader, a non-blocking open fails with ENXIO); give up if
    perf exits or takes more than 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
        if rec.poll() is not None or time.monotonic() > deadline:
            sys.exit("bench-transfer: perf record did not start")
        time.sleep(0.01)


def parse(script):
    """[(time, probe, {arg: int})] from perf script's output."""
    out = []
    for line in script.splitlines():
        m = EVENT.match(line)
        if not m:
            continue
        args = {k.split("->")[-1]: int(v, 0) for k, v in
                re.findall(r"([\w>-]+)=(0x[0-9a-f]+|\d+)", m.group(3))}
        out.append((float(m.group(1)), m.group(2), args))
    return out


def reads(events, port, min_bytes):
    """Per read on @port: (request -> first buffer, first -> last buffer,
    buffers, interrupts while the buffers came)."""
    notify = [t for t, name, _ in events if name == "notify"]
    mine = [e for e in events if e[1] in ("flush_buf", "write")
            and e[2].get("id") == port]
    out = []
    i = 0
    while i < len(mine):
        if mine[i][1] != "write":
            i += 1
            continue
        t_req = mine[i][0]
        j = i + 1
        bufs = []
        while j < len(mine) and mine[j][1] == "flush_buf":
            bufs.append(mine[j])
            j += 1
        # flush_buf() sees the rest of a buffer again after a short write
        if sum(b[2].get("len", 0) for b in bufs) >= min_bytes:
            t0, t1 = bufs[0][0], bufs[-1][0]
            irqs = sum(1 for t in notify if t0 <= t <= t1)
            out.append((t0 - t_req, t1 - t0, len(bufs), irqs))
        i = j
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kib", type=int, default=1024,
                    help="KiB per guest-file-read (1024)")
    ap.add_argument("-n", type=int, default=12,
                    help="reads per path, alternating (12)")
    ap.add_argument("--client-cpu", type=int, metavar="CPU",
                    help="pin the client to host CPU number CPU, as "
                    "bench.py --client-cpu")
    opts = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("bench-transfer: needs perf: apt-get install linux-perf")
    size = opts.kib * bench.KiB
    # the file must be larger than the clamp (about 6 MiB)
    file_mib = max(8, 4 * opts.kib // 1024 + 1)
    bopts = argparse.Namespace(
        calls=1, rounds=1, reads="1,1,1,1", file_mib=file_mib,
        probe_seconds=1, clients=1, client_calls=1, rss_commands=1,
        flush_sync=False, scale=1.0, memory=512, replot=False,
        client_cpu=opts.client_cpu)
    tmp = tempfile.mkdtemp(prefix="qga-transfer-")
    data = os.path.join(tmp, "perf.data")
    added = []
    rec = None
    b = bench.Bench(bopts)
    lat = {"socket": [], "qmp": []}
    try:
        b.start()
        if opts.client_cpu is not None:
            os.sched_setaffinity(0, {opts.client_cpu})
        b.open_file()
        # both agents see the largest blocks first, as in bench.py
        b.read_once("socket", b.find_clamp())
        for p in lat:
            for _ in range(2):
                b.read_once(p, size)
        added = add_probes()
        # perf starts with its events disabled (-D -1) and acknowledges
        # the "enable" command once they are on
        ctl, ack = os.path.join(tmp, "ctl"), os.path.join(tmp, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        rec = subprocess.Popen(["perf", "record", "-q", "-o", data, "-D",
                                "-1", "--control=fifo:%s,%s" % (ctl, ack),
                                "-e", "%s:*" % GROUP, "-p", str(b.pid)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        cfd = open_ctl(ctl, rec)
        with os.fdopen(cfd, "w", encoding="ascii") as c, \
                open(ack, encoding="ascii") as a:
            c.write("enable\n")
            c.flush()
            if a.readline().strip() != "ack":
                sys.exit("bench-transfer: perf record did not start")
        for r in range(opts.n):
            for p in (("socket", "qmp") if r % 2 else ("qmp", "socket")):
                lat[p].append(b.read_once(p, size))
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        rec = None
        script = perf("script", "-i", data, "-F", "time,event,trace").stdout
    finally:
        if rec:
            rec.kill()
            rec.wait()
        remove_probes(added)
        b.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    events = parse(script)
    print("guest-file-read of %d KiB, %d per path, medians per read:"
          % (opts.kib, opts.n))
    print("  %-20s %14s %10s %8s %11s %10s" % (
        "path", "req->1st byte", "transfer", "buffers", "interrupts",
        "client"))
    for p in ("socket", "qmp"):
        r = reads(events, PATH_PORT[p], size * 4 // 3)
        if not r:
            print("  %-20s no complete read seen (probes lost events?)"
                  % PORT_NAMES[PATH_PORT[p]])
            continue
        print("  %-20s %11.2f ms %7.2f ms %8.0f %11.0f %7.2f ms" % (
            PORT_NAMES[PATH_PORT[p]],
            statistics.median(x[0] for x in r) * 1e3,
            statistics.median(x[1] for x in r) * 1e3,
            statistics.median(x[2] for x in r),
            statistics.median(x[3] for x in r),
            statistics.median(lat[p]) * 1e3))


if __name__ == "__main__":
    main()
