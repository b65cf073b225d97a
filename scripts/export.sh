#!/bin/bash
# scripts/export.sh [--check] TREE [PATCHDIR]
#
# Export the commits upstream..HEAD of the working tree TREE as git
# format-patch files in PATCHDIR (default: $QGA_PATCHES, else patches/ of this
# checkout), with a quilt 'series' file.  The output is stable: re-exporting an unchanged tree
# changes no byte (no commit hashes, no dates other than the authors', no
# version signature).
#
# --check: change nothing; fail, listing what is missing, when TREE has
# uncommitted changes or commits that PATCHDIR does not hold.
#
# The cover letter, PATCHDIR/0000-cover-letter.patch (not in 'series'), is
# regenerated with git format-patch --cover-letter: its subject and its text
# up to the shortlog stay as they are in PATCHDIR (edit them there; a new
# PATCHDIR takes them from patches/), the shortlog and the diffstat become
# the tree's.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
CHECK=0
if [ "${1:-}" = --check ]; then CHECK=1; shift; fi
TREE=${1:?usage: export.sh [--check] TREE [PATCHDIR]}
PATCHES=${2:-${QGA_PATCHES:-$TOP/patches}}
# git format-patch -o runs in TREE: make a relative PATCHDIR absolute
case $PATCHES in /*) ;; *) PATCHES=$PWD/$PATCHES ;; esac
NAME=$(basename "$PATCHES")/

[ -d "$TREE/.git" ] || [ -f "$TREE/.git" ] || {
    echo "export.sh: $TREE is not a working tree (run make tree)" >&2; exit 1; }
git -C "$TREE" rev-parse -q --verify refs/tags/upstream >/dev/null || {
    echo "export.sh: $TREE has no 'upstream' tag" >&2; exit 1; }

COVER=0000-cover-letter.patch
GIT_FORMAT=(-c core.abbrev=12 -c diff.algorithm=myers -c diff.renames=true
            -c diff.noprefix=false -c diff.mnemonicPrefix=false -c format.signOff=false
            -c format.coverLetter=false -c format.numbered=false
            -c "user.name=QGA Passthrough Developers"
            -c user.email=devel@qga-passthrough.org)

# cover_text: patches/$COVER's subject (first line) and its text up to the
# shortlog (the rest); nothing when there is no cover letter
cover_text() {
    local from=$PATCHES/$COVER
    [ -f "$from" ] || from=$TOP/patches/$COVER
    [ -f "$from" ] || return 0
    /usr/bin/python3 - "$from" <<'PY'
import re
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    head, _, body = f.read().partition("\n\n")
subject = re.search(r"^Subject: (?:\[[^]]*\] )?(.*(?:\n .*)*)", head, re.M)
if not subject:
    sys.exit("export.sh: patches/0000-cover-letter.patch has no Subject")
# the shortlog starts with "Author Name (N):"
text = re.split(r"^\S.* \(\d+\):$", body, maxsplit=1, flags=re.M)[0]
print(re.sub(r"\n ", " ", subject.group(1)))
print(text.rstrip("\n"))
PY
}

# write_cover DIR TEXT: the cover letter of upstream..HEAD, with TEXT
write_cover() {
    local dir=$1 text=$2 scratch
    scratch=$(mktemp -d)
    git -C "$TREE" "${GIT_FORMAT[@]}" format-patch -q -n --cover-letter --zero-commit \
        --no-signature -o "$scratch" upstream..HEAD >/dev/null
    TEXT=$text DATE=$(git -C "$TREE" log -1 --format=%aD HEAD) \
        /usr/bin/python3 - "$scratch/$COVER" "$dir/$COVER" <<'PY'
import os
import re
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    cover = f.read()
subject, _, blurb = os.environ["TEXT"].partition("\n")
cover = cover.replace("*** SUBJECT HERE ***", subject, 1)
cover = cover.replace("*** BLURB HERE ***", blurb.strip("\n"), 1)
# stable output: the date of the newest commit, not the time of export
cover = re.sub(r"^Date: .*$", "Date: " + os.environ["DATE"], cover,
               count=1, flags=re.M)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write(cover)
PY
    rm -rf "$scratch"
}

export_to() {  # export_to DIR: write the patches, the series file and the cover letter to DIR
    local dir=$1 text
    text=$(cover_text)
    mkdir -p "$dir"
    rm -f "$dir"/*.patch "$dir/series"
    git -C "$TREE" "${GIT_FORMAT[@]}" \
        format-patch -q -N --zero-commit --no-signature -o "$dir" upstream..HEAD >/dev/null
    (cd "$dir" && ls -1 -- *.patch 2>/dev/null || true) > "$dir/series"
    if [ -n "$text" ]; then write_cover "$dir" "$text"; fi
}

if [ "$CHECK" = 0 ]; then
    export_to "$PATCHES"
    # the tree now matches the series it is made from (make tree)
    [ "$PATCHES" != "${QGA_PATCHES:-$TOP/patches}" ] ||
        QGA_PATCHES=$PATCHES "$TOP/scripts/tree.sh" --record "$TREE"
    echo "export.sh: $(grep -c . "$PATCHES/series" || true) patch(es) in $PATCHES"
    exit 0
fi

status=0
dirty=$(git -C "$TREE" status --porcelain 2>/dev/null | grep -Ev '^[?][?] build(-mut|-fuzz|-fuzz-fast|-san|-noqga|-nodefault)?/' || true)
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
    echo "export-check: commits of $TREE that $NAME does not hold:"
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
        echo "export-check: $NAME$p differs from its commit in $TREE"
        status=1
    fi
done
if [ -f "$tmp/$COVER" ] && ! cmp -s "$tmp/$COVER" "$PATCHES/$COVER"; then
    echo "export-check: $NAME$COVER's shortlog or diffstat is not the tree's"
    status=1
fi
if ! cmp -s "$tmp/series" "$PATCHES/series"; then
    [ "$status" = 1 ] || echo "export-check: ${NAME}series is not in the order of $TREE's commits"
    status=1
fi
if [ "$status" = 0 ]; then
    echo "export-check: $NAME holds every commit of $TREE, and it has no uncommitted changes"
else
    echo "export-check: run 'make export' (after committing) to bring $NAME up to date"
fi
exit "$status"
