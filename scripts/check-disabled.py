#!/usr/bin/python3
"""scripts/check-disabled.py: QEMU configured with --disable-qga-passthrough
(scripts/build.sh with QGA_FLAVOUR=disabled, in build/qemu/build-noqga)
builds and leaves the passthrough out: no qga chardev backend, no guest-*
commands, no query-guest-agent or guest-agent-command, and nothing of the
guest agent's schema in query-qmp-schema.  Also that qga_passthrough is a
meson feature that is on by default but off with --without-default-features
(configured, not built, in build/qemu/build-nodefault), and on in the lean
build (build/qemu/build, which enables it explicitly).  Prints one line per
check and exits non-zero when one fails.
"""

import os
import shutil
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TREE = os.environ.get("QGA_TREE", os.path.join(TOP, "build", "qemu"))
QEMU = os.path.join(TREE, "build-noqga", "qemu-system-x86_64")
NODEFAULT = os.path.join(TREE, "build-nodefault")
CONFIG = "#define CONFIG_QGA_PASSTHROUGH"

sys.path.insert(0, os.path.join(TREE, "python"))

# pylint: disable=wrong-import-position
from qemu.machine import QEMUMachine  # noqa: E402


def check(what, ok, detail=""):
    print("%s %s%s" % ("PASS" if ok else "FAIL", what,
                       (": " + detail) if detail and not ok else ""))
    return ok


def config_host(build):
    """config-host.h of @build"""
    with open(os.path.join(build, "config-host.h"), encoding="utf-8") as f:
        return f.read()


def check_feature():
    """--without-default-features turns the feature off; the lean build
    has it on"""
    results = []
    shutil.rmtree(NODEFAULT, ignore_errors=True)
    os.makedirs(NODEFAULT)
    proc = subprocess.run(["../configure", "--python=/usr/bin/python3",
                           "--disable-download", "--disable-install-blobs",
                           "--target-list=x86_64-softmmu",
                           "--without-default-features"], cwd=NODEFAULT,
                          text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    results.append(check("--without-default-features configures",
                         proc.returncode == 0, proc.stdout[-2000:]))
    if proc.returncode == 0:
        results.append(check("--without-default-features leaves it out",
                             CONFIG not in config_host(NODEFAULT)))
    results.append(check("the lean build has it",
                         CONFIG in config_host(os.path.join(TREE, "build"))))
    return results


def main():
    if not os.access(QEMU, os.X_OK):
        sys.exit("check-disabled: %s is not built (make check-disabled "
                 "builds it)" % QEMU)
    results = []
    proc = subprocess.run([QEMU, "-chardev", "help"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    backends = proc.stdout.split()
    results.append(check("-chardev help lists no qga backend",
                         "socket" in backends and "qga" not in backends,
                         proc.stdout))
    # the device that doesn't exist makes QEMU exit where -chardev qga
    # would be accepted (chardevs are created before devices)
    proc = subprocess.run([QEMU, "-machine", "none", "-display", "none",
                           "-chardev", "qga,id=qga0",
                           "-device", "no-such-device"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60, check=False)
    results.append(check("-chardev qga is refused",
                         proc.returncode != 0
                         and "'qga' is not a valid char driver name"
                         in proc.stdout, proc.stdout))
    vm = QEMUMachine(QEMU, args=["-machine", "none", "-display", "none"])
    vm.launch()
    try:
        cmds = {c["name"] for c in vm.cmd("query-commands")}
        schema = vm.cmd("query-qmp-schema")
    finally:
        vm.shutdown()
    ours = sorted(c for c in cmds
                  if c.startswith("guest-") or "guest-agent" in c)
    results.append(check("no guest agent commands", "query-status" in cmds
                         and not ours, " ".join(ours)))
    names = {e["name"] for e in schema}
    leaked = sorted(n for n in names
                    if n.startswith("guest-") or "GUEST_AGENT" in n)
    results.append(check("no guest agent commands or events in "
                         "query-qmp-schema", "query-status" in names
                         and not leaked, " ".join(leaked)))
    results += check_feature()
    print("check-disabled: %d passed, %d failed"
          % (results.count(True), results.count(False)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
