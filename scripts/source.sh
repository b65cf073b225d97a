#!/bin/bash
# scripts/source.sh: download the Debian qemu source package of the base
# QGA_BASE (default 10.0) into the cache (outside git) and print the path of
# its .dsc.
#
# Each base is pinned (QEMU_DEB_VERSION overrides the pin): 10.0 is trixie's
# 1:10.0.13+ds-0+deb13u1 (patches/), 10.2 is unstable's 1:10.2.2+ds-1
# (patches-10.2/).  If the pinned version has left the archive, the newest
# package of the same QEMU major.minor is used instead, and we say so
# loudly: the series may then need a rebase.
set -euo pipefail

BASE=${QGA_BASE:-10.0}
case $BASE in
    10.0) DEFAULT_PIN=1:10.0.13+ds-0+deb13u1 ;;
    10.2) DEFAULT_PIN=1:10.2.2+ds-1 ;;
    *) echo "source.sh: unknown base '$BASE' (10.0 or 10.2)" >&2; exit 1 ;;
esac
PIN=${QEMU_DEB_VERSION:-$DEFAULT_PIN}
CACHE=${QGA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qga-passthrough}/src
mkdir -p "$CACHE"

dsc_name() {  # 1:10.0.13+ds-0+deb13u1 -> qemu_10.0.13+ds-0+deb13u1.dsc
    echo "qemu_${1#*:}.dsc"
}

ver=$PIN
if [ ! -f "$CACHE/$(dsc_name "$ver")" ]; then
    if ! apt-cache showsrc qemu 2>/dev/null | grep -qx "Version: $PIN"; then
        newest=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' |
                 grep -E "^1:${BASE//./\\.}\\.[0-9]+" | sort -V | tail -1 || true)
        if [ -z "$newest" ]; then
            echo "source.sh: no qemu $BASE.x source package in the archive;" \
                 "run 'make deps' first (it configures the deb-src lines)" >&2
            exit 1
        fi
        {
            echo "#####################################################################"
            echo "# WARNING: the pinned base qemu $PIN is no longer in the archive."
            echo "# Falling back to qemu $newest.  The series was made against the"
            echo "# pinned version; check that it still applies and passes make check."
            echo "#####################################################################"
        } >&2
        ver=$newest
    fi
    if [ ! -f "$CACHE/$(dsc_name "$ver")" ]; then
        (cd "$CACHE" && apt-get source -q --download-only "qemu=$ver" >&2)
    fi
fi
echo "$CACHE/$(dsc_name "$ver")"
