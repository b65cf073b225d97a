#!/bin/bash
# guest/make-guest.sh OUTDIR QGA
#
# Build a tiny TCG-friendly Linux guest whose /init runs qemu-ga on the
# virtio-serial port named org.qemu.guest_agent.0.  Everything comes from
# Debian packages fetched with "apt-get download" and unpacked with
# "dpkg-deb -x" (nothing is installed for the guest).
#
#   QGA=/path/to/qemu-ga   that binary (our own build), with the host's shared
#                          libraries it needs (found with ldd)
#   QGA=bookworm           Debian bookworm's qemu-guest-agent 7.2, as an old
#                          agent for version-skew tests
#
# With "qga.second" on the kernel command line /init also runs a second
# qemu-ga on the port named org.qemu.guest_agent.1 (state in /run/qga2), for
# make bench: one guest, one agent behind -chardev qga and one behind a plain
# socket chardev.
#
# With "qga.disk" on the kernel command line (or a virtio-blk device present)
# /init also loads virtio_blk and ext4 and mounts /dev/vda on /mnt/data
# before it starts qemu-ga, so that guest-fsfreeze-* has a file system to
# freeze.
#
# Produces in OUTDIR: vmlinux (the kernel ELF, booted as PVH: no in-guest
# decompression), initrd.cpio (uncompressed newc), and key (a hash of the
# inputs: the build is skipped when it has not changed).
#
# Environment: KERNEL=stable (bookworm 6.1, virtio as modules; the default and
# the fastest to boot under TCG) or KERNEL=bpo (bookworm-backports 6.12,
# virtio built in).  QGA_CACHE: where downloaded packages are kept.
set -euo pipefail

OUT=${1:?usage: make-guest.sh OUTDIR QGA}
QGA=${2:?usage: make-guest.sh OUTDIR QGA (a qemu-ga binary, or bookworm)}
KERNEL=${KERNEL:-stable}
ARCHLIB=x86_64-linux-gnu
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
CACHE=${QGA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qga-passthrough}/guest-debs

case $KERNEL in
    bpo)    KSUITE=bookworm-backports ;;
    stable) KSUITE= ;;
    *) echo "make-guest.sh: KERNEL must be bpo or stable" >&2; exit 2 ;;
esac

# resolve the linux-image-amd64 metapackage to the real image package
KPKG=$(apt-cache depends ${KSUITE:+-t "$KSUITE"} linux-image-amd64 2>/dev/null |
       awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || { echo "make-guest.sh: cannot resolve the kernel package (run make deps)" >&2; exit 1; }
KDEB=$(apt-cache policy ${KSUITE:+-t "$KSUITE"} "$KPKG" | awk '/Candidate:/{print $2}')

if [ "$QGA" = bookworm ]; then
    QGADESC="qemu-guest-agent/bookworm $(apt-cache policy qemu-guest-agent | awk '/Candidate:/{print $2}')"
else
    [ -x "$QGA" ] || { echo "make-guest.sh: $QGA is not an executable qemu-ga" >&2; exit 1; }
    QGADESC=$(sha256sum < "$QGA")
fi
key=$( { sha256sum < "$SELF"; echo "$KPKG $KDEB $KERNEL"; echo "$QGADESC"; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/key" ] && [ "$(cat "$OUT/key")" = "$key" ] &&
   [ -f "$OUT/vmlinux" ] && [ -f "$OUT/initrd.cpio" ]; then
    echo "make-guest.sh: $OUT is up to date"
    exit 0
fi

mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
S=$WORK/sysroot
ROOT=$WORK/rootfs
mkdir -p "$S" "$ROOT"

# ------------------------------------------------------------------ packages
fetch() {  # fetch PKG[/SUITE]...: download into the cache, print the .deb paths
    local spec name deb
    for spec in "$@"; do
        name=${spec%%/*}
        (cd "$CACHE" && apt-get download -q "$spec" >/dev/null 2>"$WORK/apt.log") || {
            cat "$WORK/apt.log" >&2
            echo "make-guest.sh: apt-get download $spec failed" >&2
            exit 1
        }
        deb=$(ls -t "$CACHE/${name}_"*.deb | head -1)
        echo "$deb"
    done
}
DEBS=$(fetch "$KPKG" busybox-static)
if [ "$QGA" = bookworm ]; then
    # qemu-ga 7.2 and its runtime libraries (Depends, glib's pcre2, libc)
    DEBS="$DEBS $(fetch qemu-guest-agent/bookworm libc6 libglib2.0-0 libpcre2-8-0 \
                        libudev1 libnuma1 liburing2)"
fi
for deb in $DEBS; do
    dpkg-deb -x "$deb" "$S"
done

# ------------------------------------------------------------------ kernel
KVER=$(ls "$S/lib/modules" | head -1)
CONFIG=$S/boot/config-$KVER
# extract-vmlinux: find the compressed payload inside the bzImage
extract_vmlinux() {
    local img=$1 out=$2 spec magic tool off
    for spec in 'zstd:\x28\xb5\x2f\xfd:zstd -dcq' 'xz:\xfd\x37\x7a\x58\x5a\x00:xz -dcq' \
                'gzip:\x1f\x8b\x08:gzip -dcq'; do
        magic=$(echo "$spec" | cut -d: -f2)
        tool=$(echo "$spec" | cut -d: -f3)
        for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
            tail -c +$((off + 1)) "$img" | $tool > "$out" 2>/dev/null || true
            if [ -s "$out" ] && head -c4 "$out" | grep -q ELF; then return 0; fi
        done
    done
    return 1
}
extract_vmlinux "$S/boot/vmlinuz-$KVER" "$WORK/vmlinux" ||
    { echo "make-guest.sh: cannot extract vmlinux from the bzImage" >&2; exit 1; }

# ------------------------------------------------------------------ rootfs
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,var,root,lib/modules,lib64,usr/sbin,usr/bin,mnt/data}
ln -s ../run "$ROOT/var/run"
# /init needs a console before devtmpfs is mounted
mknod -m 600 "$ROOT/dev/console" c 5 1
# guest-shutdown runs "/sbin/shutdown -h|-P|-r +0 ..."; busybox has no shutdown applet
printf '%s\n' '#!/bin/sh' 'sync' \
    'case " $* " in *" -r "*) exec reboot -f ;; *) exec poweroff -f ;; esac' > "$ROOT/sbin/shutdown"
chmod 755 "$ROOT/sbin/shutdown"
chmod 1777 "$ROOT/tmp"

cp "$S/bin/busybox" "$ROOT/bin/busybox"
for a in $("$ROOT/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"
done

# qemu-ga and the shared libraries it needs
copy_libs() {  # copy_libs LISTING: "soname => /path (addr)" lines
    local soname path
    if echo "$1" | grep -q 'not found'; then
        echo "$1" >&2
        echo "make-guest.sh: qemu-ga needs libraries that are missing" >&2
        exit 1
    fi
    echo "$1" | awk '$1 !~ /^\// && $2 == "=>" && $3 ~ /^\// {print $1" "$3}' |
    while read -r soname path; do
        mkdir -p "$ROOT/lib/$ARCHLIB"
        cp -L "$path" "$ROOT/lib/$ARCHLIB/$soname"
    done
}
if [ "$QGA" = bookworm ]; then
    cp "$S/usr/sbin/qemu-ga" "$ROOT/usr/sbin/qemu-ga"
    # resolve with the extracted loader, independent of the host's libraries
    LDSO=$S/lib/$ARCHLIB/ld-linux-x86-64.so.2
    copy_libs "$("$LDSO" --library-path "$S/lib/$ARCHLIB:$S/usr/lib/$ARCHLIB" --list "$S/usr/sbin/qemu-ga")"
    cp -L "$LDSO" "$ROOT/lib64/ld-linux-x86-64.so.2"
else
    # without debug info: a smaller initramfs boots faster under TCG
    strip --strip-debug -o "$ROOT/usr/sbin/qemu-ga" "$QGA" 2>/dev/null ||
        cp "$QGA" "$ROOT/usr/sbin/qemu-ga"
    copy_libs "$(ldd "$QGA")"
    cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/ld-linux-x86-64.so.2"
fi

# kernel modules that are not built in (6.1: virtio core, pci, console),
# loaded at every boot
WANT=""
grep -q '^CONFIG_VIRTIO_PCI=m' "$CONFIG"     && WANT="$WANT virtio_pci"
grep -q '^CONFIG_VIRTIO_CONSOLE=m' "$CONFIG" && WANT="$WANT virtio_console"
# ... and those for a virtio-blk ext4 disk (6.1: all modules), loaded only
# when the guest has one (see /init).  ext4 and jbd2 ask for crc32c only as
# a softdep (on the alias crypto-crc32c), which add_mod does not follow:
# name the driver; without it mounting a metadata_csum file system fails.
DISK_WANT=""
grep -q '^CONFIG_VIRTIO_BLK=m' "$CONFIG"     && DISK_WANT="$DISK_WANT virtio_blk"
grep -q '^CONFIG_CRYPTO_CRC32C=m' "$CONFIG"  && DISK_WANT="$DISK_WANT crc32c_generic"
grep -q '^CONFIG_EXT4_FS=m' "$CONFIG"        && DISK_WANT="$DISK_WANT ext4"
MD=$S/lib/modules/$KVER
declare -A SEEN=()
ORDER=()
modfile() {
    find "$MD/kernel" \( -name "$1.ko*" -o -name "${1//_/-}.ko*" \) | head -1
}
modcat() {
    case $1 in *.xz) xz -dc "$1" ;; *.zst) zstd -dcq "$1" ;; *.gz) gzip -dc "$1" ;; *) cat "$1" ;; esac
}
add_mod() {  # depth first: dependencies first (.deb has no modules.dep)
    local m=$1 f dep
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    f=$(modfile "$m")
    [ -n "$f" ] || { echo "make-guest.sh: module $m not found" >&2; exit 1; }
    for dep in $(modcat "$f" | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_mod "$dep"
    done
    ORDER+=("$m")
    modcat "$f" > "$ROOT/lib/modules/$m.ko"
}
write_order() {  # write_order FILE: the modules added since the last call
    local m
    : > "$1"
    for m in ${ORDER[@]+"${ORDER[@]}"}; do echo "$m.ko" >> "$1"; done
    ORDER=()
}
for m in $WANT; do add_mod "$m"; done
write_order "$ROOT/lib/modules/load-order"
# dependencies already in load-order (virtio, virtio_ring) are not repeated
for m in $DISK_WANT; do add_mod "$m"; done
write_order "$ROOT/lib/modules/load-order.disk"

cat > "$ROOT/etc/os-release" <<EOS
PRETTY_NAME="qga-mini (Debian 12 busybox initramfs, kernel $KVER)"
NAME="qga-mini"
ID=debian
VERSION_ID="12"
VERSION="12 (bookworm)"
EOS
echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:"                      > "$ROOT/etc/group"
echo "qga-mini"                       > "$ROOT/etc/hostname"

cat > "$ROOT/init" <<'EOF_INIT'
#!/bin/sh
# PID 1 of the qga-mini guest.  Under TCG every fork+exec of busybox costs
# 10-30 ms, so shell builtins are used where possible.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
read -r CMDLINE < /proc/cmdline
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo qga-mini > /proc/sys/kernel/hostname
while read -r m; do
    [ -n "$m" ] && insmod /lib/modules/$m
done < /lib/modules/load-order
# no udev: find the port by name and make /dev/virtio-ports/<name> ourselves
# find_port NAME: set FOUND to the device of the virtio port NAME, waiting
# up to 10 s for it; empty if there is none
find_port() {
    FOUND=
    i=0
    while [ $i -lt 2000 ]; do
        for n in /sys/class/virtio-ports/*/name; do
            [ -r "$n" ] || continue
            read -r pn < "$n"
            if [ "$pn" = "$1" ]; then d=${n%/name}; FOUND=/dev/${d##*/}; fi
        done
        [ -n "$FOUND" ] && [ -c "$FOUND" ] && return
        [ $i = 0 ] && echo "qga-mini: waiting for port $1" > /dev/console
        i=$((i+1)); usleep 5000
    done
    FOUND=
}
NAME=org.qemu.guest_agent.0
find_port $NAME
PORT=$FOUND
if [ -z "$PORT" ]; then
    echo "qga-mini: no virtio port named $NAME" > /dev/console
    exec sh
fi
mkdir -p /dev/virtio-ports
ln -sf "$PORT" /dev/virtio-ports/$NAME
ip link set lo up &
# a data disk: qga.disk on the kernel command line says the guest has a
# virtio-blk disk with an ext4 file system (tests/harness: Guest(disk=True)),
# mounted on /mnt/data before qemu-ga starts (for guest-fsfreeze-*).  Without
# qga.disk a virtio-blk device is still mounted when sysfs shows one, but
# nothing is loaded or waited for when there is none: boot time unchanged.
DISK=
case " $CMDLINE " in *" qga.disk "*) DISK=wait ;; esac
if [ -z "$DISK" ]; then
    for n in /sys/bus/virtio/devices/*/device; do
        [ -r "$n" ] || continue
        read -r id < "$n"
        [ "$id" = 0x0002 ] && DISK=found
    done
fi
if [ -n "$DISK" ]; then
    while read -r m; do
        [ -n "$m" ] && insmod /lib/modules/$m
    done < /lib/modules/load-order.disk
    i=0
    while [ ! -b /dev/vda ] && [ $DISK = wait ] && [ $i -lt 200 ]; do
        [ $i = 0 ] && echo "qga-mini: waiting for /dev/vda" > /dev/console
        i=$((i+1)); usleep 5000
    done
    if [ ! -b /dev/vda ]; then
        echo "qga-mini: no /dev/vda" > /dev/console
    elif mount -t ext4 /dev/vda /mnt/data 2>/dev/console; then
        echo "qga-mini: mounted /dev/vda on /mnt/data" > /dev/console
    else
        echo "qga-mini: cannot mount /dev/vda on /mnt/data" > /dev/console
    fi
fi
# qga.shell: a shell on the serial console, so that tests can act in the
# guest without the agent (e.g. kill qemu-ga to close and reopen the port)
case " $CMDLINE " in
    *" qga.shell "*) setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' & ;;
esac
# qga.noagent on the kernel command line: boot without starting qemu-ga
# qga.args=a,b: extra qemu-ga options
case " $CMDLINE " in *" qga.noagent "*) echo "qga-mini: not starting qemu-ga" > /dev/console; exec sh ;; esac
QGA_ARGS=
for w in $CMDLINE; do case $w in qga.args=*) QGA_ARGS=$(echo "${w#qga.args=}" | tr , ' ') ;; esac; done
# qga.second: a second qemu-ga on the port org.qemu.guest_agent.1, with a
# state directory of its own, restarted like the first (scripts/bench.py).
# Without qga.second nothing is looked for: boot time unchanged.
case " $CMDLINE " in *" qga.second "*)
    NAME2=org.qemu.guest_agent.1
    find_port $NAME2
    PORT2=$FOUND
    if [ -z "$PORT2" ]; then
        echo "qga-mini: no virtio port named $NAME2" > /dev/console
    else
        ln -sf "$PORT2" /dev/virtio-ports/$NAME2
        mkdir -p /run/qga2
        echo "qga-mini: starting a second qemu-ga on $PORT2" > /dev/console
        while :; do
            /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/$NAME2 \
                -f /run/qga2/qemu-ga.pid -t /run/qga2 $QGA_ARGS 2>/dev/console
            echo "qga-mini: the second qemu-ga exited ($?), restarting" > /dev/console
            sleep 1
        done &
    fi ;;
esac
echo "qga-mini: starting qemu-ga on $PORT" > /dev/console
# qemu-ga in the foreground; restarted when it exits (or is killed)
while :; do
    /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/$NAME \
        -f /run/qemu-ga.pid -t /run $QGA_ARGS 2>/dev/console
    echo "qga-mini: qemu-ga exited ($?), restarting" > /dev/console
    sleep 1
done
EOF_INIT
chmod 755 "$ROOT/init"

# ------------------------------------------------------------------ cpio
find "$ROOT" -exec touch -h -d @1700000000 {} +
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort |
    "$ROOT/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) > "$WORK/initrd.cpio"

mv "$WORK/vmlinux" "$OUT/vmlinux"
mv "$WORK/initrd.cpio" "$OUT/initrd.cpio"
echo "$key" > "$OUT/key"
echo "make-guest.sh: $OUT: kernel $KVER, qemu-ga $( [ "$QGA" = bookworm ] && echo "$QGADESC" || echo "$QGA"), $(du -h "$OUT/initrd.cpio" | cut -f1) initramfs"
