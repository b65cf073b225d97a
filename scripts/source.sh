#!/bin/bash
# scripts/source.sh: download Debian trixie's qemu source package into the
# cache (outside git) and print the path of its .dsc.
#
# The base is pinned (QEMU_DEB_VERSION).  If the pinned version has left the
# archive, the newest trixie 10.0.x is used instead, and we say so loudly:
# the series may then need a rebase.
set -euo pipefail

PIN=${QEMU_DEB_VERSION:-1:10.0.13+ds-0+deb13u1}
CACHE=${QGA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qga-passthrough}/src
mkdir -p "$CACHE"

dsc_name() {  # 1:10.0.13+ds-0+deb13u1 -> qemu_10.0.13+ds-0+deb13u1.dsc
    echo "qemu_${1#*:}.dsc"
}

ver=$PIN
if [ ! -f "$CACHE/$(dsc_name "$ver")" ]; then
    if ! apt-cache showsrc qemu 2>/dev/null | grep -qx "Version: $PIN"; then
        newest=$(apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p' |
                 grep -E '^1:10\.0\.[0-9]+' | sort -V | tail -1 || true)
        if [ -z "$newest" ]; then
            echo "source.sh: no qemu 10.0.x source package in the archive;" \
                 "run 'make deps' first (it configures trixie deb-src lines)" >&2
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
