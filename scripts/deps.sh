#!/bin/bash
# scripts/deps.sh: install what building the patched QEMU, the tiny guest and
# the test suites needs on a Debian 12 (bookworm) machine.  Idempotent and
# non-interactive; must run as root (CI runs as root).
#
#  - deb-src lines for trixie, whose qemu source package (QEMU 10.0.x) is the
#    base of the series, and for unstable, which has the QEMU 10.2 package
#    that the second series (patches-10.2/) is made for;
#  - the bookworm-backports binary suite, for meson >= 1.5 (QEMU 10.0 needs it)
#    and python3-pycotap.  Backports have a low pin priority, so nothing else
#    is upgraded from there unless asked for with -t.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: must run as root (it configures apt and installs packages)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
SOURCES=/etc/apt/sources.list.d/qga-passthrough.sources
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

want_sources=$(cat <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates unstable
Components: main
Signed-By: $KEYRING

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: $KEYRING

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: $KEYRING
EOS
)

stamp=/var/lib/apt/periodic/qga-passthrough-update
if [ ! -f "$SOURCES" ] || [ "$(cat "$SOURCES")" != "$want_sources" ]; then
    printf '%s\n' "$want_sources" > "$SOURCES"
    rm -f "$stamp"
fi
# refresh the package lists at most once an hour (and always after a change)
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +60)" ]; then
    apt-get update -q
    mkdir -p "$(dirname "$stamp")"
    touch "$stamp"
fi

# build of the lean x86_64 QEMU
PKGS="build-essential git ninja-build pkg-config ccache dpkg-dev
      libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev zlib1g-dev
      python3 python3-venv
      seabios ipxe-qemu"
# guest kit: apt-get download + dpkg-deb -x, kernel extraction, module unpacking
PKGS="$PKGS xz-utils zstd gzip"
# the guest's ext4 data disk (tests/test_fsfreeze*.py): mke2fs
PKGS="$PKGS e2fsprogs"
# the manuals (QMP reference with the guest agent commands, man pages)
PKGS="$PKGS python3-sphinx python3-sphinx-rtd-theme"
# series hygiene (checkpatch.pl, QEMU's linters for scripts/qapi) and tests
PKGS="$PKGS perl socat flake8 isort mypy pylint"
# make bench: the report's plots
PKGS="$PKGS python3-matplotlib"
# tests/test_libvirt.py: libvirtd and virsh (no service is started)
PKGS="$PKGS libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
# the fuzz target (clang with libFuzzer and the sanitizer runtimes)
PKGS="$PKGS clang libclang-rt-14-dev"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get install -y -q --no-install-recommends $missing
fi

# meson >= 1.5 and pycotap come from bookworm-backports
ver=$(dpkg-query -W -f='${Version}' meson 2>/dev/null || true)
if [ -z "$ver" ] || dpkg --compare-versions "$ver" lt 1.5; then
    apt-get install -y -q --no-install-recommends -t bookworm-backports meson
fi
# qemu-system-data: the x86 option ROMs (pvh.bin, linuxboot_dma.bin, ...) of
# QEMU 10.0, which our lean build does not make (it would need an i386
# cross-compiler); it is data only.
for p in python3-pycotap qemu-system-data; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed'; then
        apt-get install -y -q --no-install-recommends -t bookworm-backports "$p"
    fi
done

echo "deps.sh: build and test dependencies are installed"
