#!/bin/bash
# scripts/build-each.sh TREE [FIRST]: check that every patch of the series
# builds on its own, as QEMU's maintainers require (git bisect must work).
#
# Clones TREE (the working tree of make tree) into TREE-each, then checks
# out upstream+1 .. HEAD one commit at a time (from patch number FIRST,
# default 1) and builds each with scripts/build.sh: same configuration,
# -Werror, documentation included.  Builds are incremental and use ccache,
# but patches that change a QAPI schema or config-host.h rebuild most of
# QEMU: the whole series took 17 minutes on 2 cores with a warm ccache
# (more with a cold one), which is why this is not part of make check.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "${1:?usage: build-each.sh TREE [FIRST]}" && pwd)
FIRST=${2:-1}
EACH=$TREE-each

git -C "$TREE" rev-parse -q --verify refs/tags/upstream >/dev/null || {
    echo "build-each.sh: $TREE has no 'upstream' tag (run make tree)" >&2; exit 1; }
if [ -n "$(git -C "$TREE" status --porcelain --untracked-files=no)" ]; then
    echo "build-each.sh: note: $TREE has uncommitted changes; they are not built" >&2
fi

if [ ! -d "$EACH/.git" ]; then
    git clone -q --shared --no-checkout "$TREE" "$EACH"
fi
git -C "$EACH" fetch -q --tags "$TREE" HEAD
mapfile -t commits < <(git -C "$EACH" rev-list --reverse upstream..FETCH_HEAD)

n=0
for c in "${commits[@]}"; do
    n=$((n + 1))
    [ "$n" -ge "$FIRST" ] || continue
    subject=$(git -C "$EACH" log -1 --format=%s "$c")
    printf 'build-each.sh: [%d/%d] %s\n' "$n" "${#commits[@]}" "$subject"
    git -C "$EACH" checkout -q --detach "$c"
    if ! "$TOP/scripts/build.sh" "$EACH" > "$EACH/build-each.log" 2>&1; then
        tail -40 "$EACH/build-each.log"
        echo "build-each.sh: patch $n does not build: $subject" >&2
        echo "build-each.sh: log in $EACH/build-each.log; continue with:" \
             "scripts/build-each.sh $TREE $n" >&2
        exit 1
    fi
done
echo "build-each.sh: every patch from $FIRST to ${#commits[@]} builds"
