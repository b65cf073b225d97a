#!/bin/bash
# scripts/export.sh [--check] TREE [PATCHDIR]
#
# Export the commits upstream..HEAD of the working tree TREE as git
# format-patch files in PATCHDIR (default: patches/ of this checkout), with a
# quilt 'series' file.  The output is stable: re-exporting an unchanged tree
# changes no byte (no commit hashes, no dates other than the authors', no
# version signature).
#
# --check: change nothing; fail, listing what is missing, when TREE has
# uncommitted changes or commits that PATCHDIR does not hold.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
TREE=${1:?usage: export.sh [--check] TREE [PATCHDIR]}
PATCHES=${2:-$TOP/patches}

[ -d "$TREE/.git" ] || [ -f "$TREE/.git" ] || {
    echo "export.sh: $TREE is not a working tree (run make tree)" >&2; exit 1; }
git -C "$TREE" rev-parse -q --verify refs/tags/upstream >/dev/null || {
    echo "export.sh: $TREE has no 'upstream' tag" >&2; exit 1; }

export_to() {  # export_to DIR: write the patches and the series file to DIR
    local dir=$1
    mkdir -p "$dir"
    rm -f "$dir"/*.patch "$dir/series"
    git -C "$TREE" -c core.abbrev=12 -c diff.algorithm=myers -c diff.renames=true \
        -c diff.noprefix=false -c diff.mnemonicPrefix=false -c format.signOff=false \
        -c format.coverLetter=false -c format.numbered=false \
        format-patch -q -N --zero-commit --no-signature -o "$dir" upstream..HEAD >/dev/null
    (cd "$dir" && ls -1 -- *.patch 2>/dev/null || true) > "$dir/series"
}

if [ "$CHECK" = 0 ]; then
    export_to "$PATCHES"
    [ "$PATCHES" != "$TOP/patches" ] || "$TOP/scripts/tree.sh" --record "$TREE"
    echo "export.sh: $(grep -c . "$PATCHES/series" || true) patch(es) in $PATCHES"
    exit 0
fi

status=0
dirty=$(git -C "$TREE" status --porcelain 2>/dev/null | grep -Ev '^[?][?] build(-mut|-fuzz|-fuzz-fast|-san|-noqga)?/' || true)
if [ -n "$dirty" ]; then
    echo "export-check: $TREE has changes that are not committed:"
    printf '%s\n' "$dirty" | sed 's/^/    /'
    status=1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export_to "$tmp"
missing=$(comm -23 <(sort "$tmp/series") <(sort "$PATCHES/series" 2>/dev/null || true))
if [ -n "$missing" ]; then
    echo "export-check: commits of $TREE that patches/ does not hold:"
    printf '%s\n' "$missing" | sed 's/^/    /'
    status=1
fi
extra=$(comm -13 <(sort "$tmp/series") <(sort "$PATCHES/series" 2>/dev/null || true))
if [ -n "$extra" ]; then
    echo "export-check: patches that $TREE does not have as commits:"
    printf '%s\n' "$extra" | sed 's/^/    /'
    status=1
fi
for p in $(comm -12 <(sort "$tmp/series") <(sort "$PATCHES/series" 2>/dev/null || true)); do
    if ! cmp -s "$tmp/$p" "$PATCHES/$p"; then
        echo "export-check: patches/$p differs from its commit in $TREE"
        status=1
    fi
done
if ! cmp -s "$tmp/series" "$PATCHES/series"; then
    [ "$status" = 1 ] || echo "export-check: patches/series is not in the order of $TREE's commits"
    status=1
fi
if [ "$status" = 0 ]; then
    echo "export-check: patches/ holds every commit of $TREE, and it has no uncommitted changes"
else
    echo "export-check: run 'make export' (after committing) to bring patches/ up to date"
fi
exit "$status"
