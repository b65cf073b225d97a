"""libvirt (Debian bookworm's 9.0) running the patched QEMU with the agent
behind QEMU's own QMP monitor: the domain gets -chardev qga and the
agent's virtserialport through <qemu:commandline>, and guest-* commands
go through `virsh qemu-monitor-command`, libvirt's QMP passthrough.
libvirt's own agent APIs (virsh qemu-agent-command, domtime, ...) do not
see that agent: libvirt only knows agents on channels it configured.

The daemon runs in a private mount namespace (unshare -m), so that
nothing of the host's /etc, /run or /var changes: a tmpfs over /run, an
overlay with a tmpfs upper layer over /var, and over /etc/libvirt a
directory with a private qemu.conf (root, no security driver, no cgroups,
no virtlogd, no private /dev for QEMU); /dev/kvm is hidden.  libvirt's
QEMU driver resolves its built-in default user libvirt-qemu and group kvm
at start-up even when qemu.conf says root, so /etc/passwd and /etc/group
are replaced in the namespace by copies that have them.  virsh reaches
the daemon with nsenter into its namespace.

Needs root and Debian's libvirt-daemon, libvirt-daemon-driver-qemu and
libvirt-clients (scripts/deps.sh), and util-linux's unshare and nsenter.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import (BOOT_TIMEOUT, GUESTS, KERNEL_APPEND, QEMU,
                     REPLY_TIMEOUT, tree_version, wait_for)

LIBVIRTD = "/usr/sbin/libvirtd"
VIRSH = "/usr/bin/virsh"
URI = "qemu:///system"
DOMAIN = "qga-libvirt-test"
UUID = "6a0f3c64-2d1e-4b8e-9a43-5f1d6c0e7b21"
# the daemon's start-up, a virsh call and the domain's shut-down are quick;
# these are failure bounds
DAEMON_TIMEOUT = 60.0
VIRSH_TIMEOUT = 90.0

# Run as: unshare -m --propagation private /bin/sh ns.sh WORKDIR.
# Sets the namespace's mounts up, then execs libvirtd in the foreground
# (same pid as unshare, so the test can signal and nsenter it).
NS_SCRIPT = r"""set -eu
W=$1
mount -t tmpfs -o mode=0755 qga-libvirt "$W/ns"
mkdir -p "$W/ns/etc" "$W/ns/var-up" "$W/ns/var-work"
# a fresh /run: no host daemon (D-Bus, systemd-machined) is reachable
mount -t tmpfs -o mode=0755 qga-libvirt-run /run
mount -t overlay overlay \
    -o "lowerdir=/var,upperdir=$W/ns/var-up,workdir=$W/ns/var-work" /var
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
cat > "$W/ns/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
namespaces = [ ]
EOF
cat > "$W/ns/etc/libvirtd.conf" <<'EOF'
log_outputs = "3:stderr"
EOF
cp /etc/passwd "$W/ns/passwd"
cp /etc/group "$W/ns/group"
getent passwd libvirt-qemu >/dev/null ||
    echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' \
        >> "$W/ns/passwd"
getent group libvirt-qemu >/dev/null ||
    echo 'libvirt-qemu:x:64055:' >> "$W/ns/group"
getent group kvm >/dev/null || echo 'kvm:x:64056:' >> "$W/ns/group"
# the QEMU we built has no KVM; with a usable /dev/kvm, libvirt deems its
# cached capabilities of such a QEMU stale and probes it again (2 s, a
# QEMU run each) at every capability lookup: ten of them for a define.
# It tests /dev/kvm with access(R_OK|W_OK), which fails with EROFS for a
# regular file on a read-only mount (not for a device): such a file hides
# /dev/kvm.  namespaces = [] below: no private /dev for QEMU, which would
# copy /dev/kvm.
if [ -e /dev/kvm ]; then
    : > "$W/ns/nokvm"
    mount --bind "$W/ns/nokvm" /dev/kvm
    mount -o remount,bind,ro /dev/kvm
fi
mount --bind "$W/ns/etc" /etc/libvirt
mount --bind "$W/ns/passwd" /etc/passwd
mount --bind "$W/ns/group" /etc/group
exec %(libvirtd)s -f /etc/libvirt/libvirtd.conf
"""

DOMAIN_XML = """\
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%(name)s</name>
  <uuid>%(uuid)s</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%(guest)s/vmlinux</kernel>
    <initrd>%(guest)s/initrd.cpio</initrd>
    <cmdline>%(append)s</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='maximum' migratable='off'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%(qemu)s</emulator>
    <controller type='usb' model='none'/>
    <controller type='virtio-serial' index='0'/>
    <serial type='file'>
      <source path='%(console)s'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-chardev'/>
    <qemu:arg value='qga,id=qga0'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='%(port)s'/>
  </qemu:commandline>
</domain>
"""

# JSON, not key=value: QEMU creates key=value -device options before
# libvirt's JSON ones, when the bus virtio-serial0.0 does not exist yet
PORT_JSON = json.dumps({"driver": "virtserialport", "bus": "virtio-serial0.0",
                        "nr": 1, "chardev": "qga0", "id": "qgaport0",
                        "name": "org.qemu.guest_agent.0"},
                       separators=(",", ":"))


class Libvirtd:
    """libvirtd in a private mount namespace; virsh runs in it too."""

    def __init__(self, work):
        self.work = work
        self.log_path = os.path.join(work, "libvirtd.log")
        os.mkdir(os.path.join(work, "ns"))
        script = os.path.join(work, "ns.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(NS_SCRIPT % {"libvirtd": LIBVIRTD})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private",
                 "/bin/sh", script, work],
                stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def run(self, argv, timeout=VIRSH_TIMEOUT):
        """@argv in the daemon's mount namespace: CompletedProcess with
        stdout and stderr as text."""
        return subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-m", "--"] + argv,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)

    def virsh(self, *args, check=True):
        proc = self.run([VIRSH, "-q", "-c", URI] + list(args))
        if check:
            assert proc.returncode == 0, "virsh %s failed (%d): %s%s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr)
        return proc

    def qmp(self, name, arguments=None):
        """One QMP command through virsh qemu-monitor-command: its
        "return" value; fails on an error reply."""
        msg = {"execute": name}
        if arguments is not None:
            msg["arguments"] = arguments
        out = self.virsh("qemu-monitor-command", DOMAIN,
                         json.dumps(msg)).stdout
        reply = json.loads(out)
        assert "return" in reply, "%s: %r" % (name, reply)
        return reply["return"]

    def wait_ready(self):
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while True:
            assert self.proc.poll() is None, (
                "libvirtd exited (%s):\n%s" % (self.proc.returncode,
                                               self.log()))
            # only once the script has exec'd libvirtd are the namespace's
            # mounts complete (and virsh cannot reach a host daemon)
            try:
                exe = os.readlink("/proc/%d/exe" % self.proc.pid)
            except OSError:
                exe = None
            proc = None
            if exe == LIBVIRTD:
                proc = self.virsh("uri", check=False)
                if proc.returncode == 0:
                    return
            assert time.monotonic() < deadline, (
                "libvirtd not answering within %.0f s: %s\n%s"
                % (DAEMON_TIMEOUT, proc and proc.stderr, self.log()))
            time.sleep(0.2)

    def stop(self):
        """SIGTERM, then SIGKILL, to the daemon (by pid); bounded."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=DAEMON_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=DAEMON_TIMEOUT)


def kill_qemu(pid):
    """Kill the domain's QEMU (by pid) if it outlived the daemon."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if QEMU.encode() not in f.read().split(b"\0")[0]:
                return
        os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        return
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_libvirt_qemu_monitor_command():
    for tool in (LIBVIRTD, VIRSH):
        assert os.access(tool, os.X_OK), (
            "%s missing: install libvirt-daemon libvirt-daemon-driver-qemu "
            "libvirt-clients (scripts/deps.sh)" % tool)
    for tool in ("unshare", "nsenter"):
        assert shutil.which(tool), "%s missing (util-linux)" % tool
    assert os.geteuid() == 0, "libvirt's system daemon needs root"
    guest = os.path.join(GUESTS, "current")
    work = tempfile.mkdtemp(prefix="qga-libvirt-")
    console = os.path.join(work, "console.log")
    xml = os.path.join(work, "domain.xml")
    with open(xml, "w", encoding="utf-8") as f:
        f.write(DOMAIN_XML % {"name": DOMAIN, "uuid": UUID, "guest": guest,
                              "append": KERNEL_APPEND, "qemu": QEMU,
                              "console": console, "port": PORT_JSON})
    daemon = None
    qemu_pid = None
    undefined = False
    try:
        daemon = Libvirtd(work)
        daemon.wait_ready()
        daemon.virsh("define", xml)
        daemon.virsh("start", DOMAIN)
        pid = daemon.run(["cat", "/run/libvirt/qemu/%s.pid" % DOMAIN])
        if pid.returncode == 0 and pid.stdout.strip().isdigit():
            qemu_pid = int(pid.stdout.strip())

        def synced():
            state = daemon.qmp("query-guest-agent")
            assert state["configured"] and state["chardev"] == "qga0", state
            return state if state["synced"] else None

        try:
            state = wait_for(synced, BOOT_TIMEOUT,
                             "no query-guest-agent synced", interval=0.2)
        except AssertionError:
            with open(console, encoding="utf-8", errors="replace") as f:
                raise AssertionError("agent not synced; console:\n%s"
                                     % f.read()[-3000:]) from None
        assert state["guest-connected"], state

        assert daemon.qmp("guest-ping") == {}
        version = daemon.qmp("guest-info")["version"]
        assert version == tree_version(), (version, tree_version())

        pid = daemon.qmp("guest-exec", {
            "path": "/bin/echo", "arg": ["hello", "from", "libvirt"],
            "capture-output": True})["pid"]

        def exited():
            status = daemon.qmp("guest-exec-status", {"pid": pid})
            return status if status["exited"] else None

        status = wait_for(exited, REPLY_TIMEOUT, "guest-exec never exited",
                          interval=0.2)
        assert status["exitcode"] == 0, status
        out = base64.b64decode(status["out-data"])
        assert out == b"hello from libvirt\n", status

        state = daemon.qmp("query-guest-agent")
        assert state["synced"] and state["version"] == tree_version(), state
        assert state["timeouts"] == 0 and state["in-flight"] == 0, state

        # libvirt's own agent APIs: it configured no agent channel
        for args in (["qemu-agent-command", DOMAIN,
                      '{"execute":"guest-ping"}'],
                     ["domtime", DOMAIN]):
            proc = daemon.virsh(*args, check=False)
            assert proc.returncode != 0, (args, proc.stdout)
            assert "QEMU guest agent is not configured" in proc.stderr, (
                args, proc.stderr)

        # libvirt marks the domain as tainted by both the extra arguments
        # and the monitor passthrough
        dlog = daemon.run(["cat", "/var/log/libvirt/qemu/%s.log" % DOMAIN])
        assert "tainted: custom-argv" in dlog.stdout, dlog.stdout[-2000:]
        assert "tainted: custom-monitor" in dlog.stdout, dlog.stdout[-2000:]

        daemon.virsh("destroy", DOMAIN)
        daemon.virsh("undefine", DOMAIN)
        undefined = True
        assert daemon.virsh("list", "--all", "--name").stdout.strip() == ""
    finally:
        if daemon is not None:
            if daemon.proc.poll() is None and not undefined:
                # on failure, still stop the domain; errors do not matter
                for args in (("destroy", DOMAIN), ("undefine", DOMAIN)):
                    try:
                        daemon.virsh(*args, check=False)
                    except subprocess.TimeoutExpired:
                        pass
            daemon.stop()
        if qemu_pid is not None:
            kill_qemu(qemu_pid)
        shutil.rmtree(work, ignore_errors=True)
