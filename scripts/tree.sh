#!/bin/bash
# scripts/tree.sh DIR: make DIR a git working tree of the Debian qemu source
# (debian/patches applied by dpkg-source), its base commit tagged 'upstream',
# with patches/series applied on top with 'git am' (no fuzz, no 3-way).
# QGA_BASE (default 10.0) chooses the base (scripts/source.sh) and
# QGA_PATCHES the series (default patches/ of this checkout).
#
# An existing tree is left alone, except when patches/ changed since it was
# applied (or last exported) and the tree holds no work of its own: then the
# series is re-applied.  'make distclean' starts over.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
RECORD=0
if [ "${1:-}" = --record ]; then RECORD=1; shift; fi   # the tree matches patches/ now
DIR=${1:?usage: tree.sh [--record] DIR}
PATCHDIR=${QGA_PATCHES:-$TOP/patches}
SERIES=$PATCHDIR/series

git_tree() { git -C "$DIR" -c user.name=qga-passthrough -c user.email=qga-passthrough@localhost "$@"; }

apply_series() {
    local p
    while read -r p; do
        case $p in ''|'#'*) continue ;; esac
        git_tree am -q --keep-cr "$PATCHDIR/$p" || {
            git_tree am --abort || true
            echo "tree.sh: $PATCHDIR/$p does not apply to $DIR" >&2
            exit 1
        }
    done < "$SERIES"
}

series_hash() { cat "$SERIES" $(sed -e '/^#/d' -e '/^$/d' -e "s|^|$PATCHDIR/|" "$SERIES") | sha256sum | cut -d' ' -f1; }
STATE=$DIR/.git/qga-applied   # "<series hash> <HEAD after applying it>"

record() { echo "$(series_hash) $(git -C "$DIR" rev-parse HEAD)" > "$STATE"; }

if [ "$RECORD" = 1 ]; then
    record
    exit 0
fi
if [ -d "$DIR/.git" ]; then
    read -r applied_hash applied_head < "$STATE" 2>/dev/null || true
    [ "${applied_hash:-}" = "$(series_hash)" ] && exit 0
    if [ "${applied_head:-}" = "$(git -C "$DIR" rev-parse HEAD)" ] &&
       [ -z "$(git -C "$DIR" status --porcelain --untracked-files=no)" ]; then
        # patches/ changed (e.g. a pull) and the tree holds no work of its own
        echo "tree.sh: patches/ changed; re-applying the series to $DIR"
        git_tree reset -q --hard upstream
        apply_series
        record
    else
        echo "tree.sh: note: $DIR has work of its own and patches/ differs from what" \
             "was applied; leaving the tree alone (make export-check tells the difference)" >&2
    fi
    exit 0
fi

dsc=$("$TOP/scripts/source.sh")
mkdir -p "$(dirname "$DIR")"
tmp=$(mktemp -d "${DIR%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# dpkg-source verifies the checksums of the .dsc's files before unpacking
dpkg-source -q -x "$dsc" "$tmp/src" >/dev/null
rm -rf "$tmp/src/.pc"
git -C "$tmp/src" init -q -b main
git -C "$tmp/src" add -A -f .
base=$(basename "$dsc" .dsc)
git -C "$tmp/src" -c user.name=qga-passthrough -c user.email=qga-passthrough@localhost \
    commit -q -m "upstream: ${base#qemu_} (Debian source package, debian/patches applied)"
git -C "$tmp/src" tag upstream
# the base commit holds debian/ too; the series touches only QEMU's own files
mv "$tmp/src" "$DIR"
apply_series
record
echo "tree.sh: $DIR is at $(git -C "$DIR" describe --tags --always) ($(git -C "$DIR" rev-list --count upstream..HEAD) patches)"
