"""Series hygiene: checkpatch, clean application, stable export, export-check."""

import os
import re
import shutil
import subprocess
import tempfile

from harness import TOP, TREE, run

PATCHES = os.environ.get("QGA_PATCHES", os.path.join(TOP, "patches"))
EXPORT = os.path.join(TOP, "scripts", "export.sh")


def git(*args, cwd):
    return run(["git", "-c", "user.name=qga-test",
                "-c", "user.email=qga-test@localhost"] + list(args), cwd=cwd)


def series():
    with open(os.path.join(PATCHES, "series"), encoding="utf-8") as f:
        return [l.strip() for l in f
                if l.strip() and not l.startswith("#")]


def checkpatch(path):
    return run(["./scripts/checkpatch.pl", path], cwd=TREE, check=False)


def test_checkpatch_finds_problems():
    """checkpatch.pl as we run it does report a bad patch (so a clean
    result for our series means something)."""
    bad = ("From: Someone <someone@example.org>\n"
           "Subject: [PATCH] util: bad\n\n"
           "no sign-off here\n---\n"
           "diff --git a/util/cutils.c b/util/cutils.c\n"
           "--- a/util/cutils.c\n+++ b/util/cutils.c\n"
           "@@ -1,1 +1,2 @@\n /*\n+int x = 1;   \n")
    with tempfile.NamedTemporaryFile("w", suffix=".patch") as f:
        f.write(bad)
        f.flush()
        proc = checkpatch(f.name)
    assert proc.returncode != 0, proc.stdout
    assert "trailing whitespace" in proc.stdout, proc.stdout
    assert "Signed-off-by" in proc.stdout, proc.stdout


def test_checkpatch_clean():
    """Every patch of the series: 0 errors, 0 warnings."""
    bad = []
    for p in series():
        proc = checkpatch(os.path.join(PATCHES, p))
        out = proc.stdout
        if proc.returncode != 0 or "total: 0 errors, 0 warnings" not in out:
            bad.append("%s:\n%s" % (p, out))
    assert not bad, "\n".join(bad)
    print("checkpatch: %d patch(es) clean" % len(series()))


def test_series_applies_to_pristine_tree():
    """git am of patches/ on the pristine base (no fuzz, no 3-way) gives
    exactly build/qemu's committed tree (HEAD, whatever its working tree
    holds; uncommitted work is export-check's business)."""
    tmp = tempfile.mkdtemp(prefix="qga-pristine-")
    try:
        clone = os.path.join(tmp, "qemu")
        run(["git", "clone", "-q", "--shared", "--no-checkout", TREE, clone])
        git("checkout", "-q", "upstream", cwd=clone)
        for p in series():
            proc = run(["git", "-c", "user.name=qga-test",
                        "-c", "user.email=qga-test@localhost", "am", "-q",
                        os.path.join(PATCHES, p)], cwd=clone, check=False)
            assert proc.returncode == 0, "%s does not apply:\n%s" % (
                p, proc.stdout)
        got = git("rev-parse", "HEAD^{tree}", cwd=clone).stdout.strip()
        want = git("rev-parse", "HEAD^{tree}", cwd=TREE).stdout.strip()
        assert got == want, ("the series gives tree %s, build/qemu's HEAD "
                             "has %s: run make export-check" % (got, want))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_reexport_is_byte_identical():
    tmp = tempfile.mkdtemp(prefix="qga-export-")
    try:
        # the cover letter's text comes from the directory exported to
        shutil.copy(os.path.join(PATCHES, "0000-cover-letter.patch"), tmp)
        for extra in set(os.listdir(PATCHES)) - set(series()) - {
                "series", "0000-cover-letter.patch"}:
            shutil.copy(os.path.join(PATCHES, extra), tmp)
        run([EXPORT, TREE, tmp])
        want = sorted(os.listdir(PATCHES))
        got = sorted(os.listdir(tmp))
        assert got == want, "files differ: %s vs %s" % (got, want)
        for name in want:
            with open(os.path.join(PATCHES, name), "rb") as a, \
                    open(os.path.join(tmp, name), "rb") as b:
                assert a.read() == b.read(), "%s changes on re-export" % name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_export_check():
    """export-check passes on a clean tree, fails (and says what) on a
    dirty one and on one with an unexported commit, passes after export."""
    tmp = tempfile.mkdtemp(prefix="qga-export-check-")
    try:
        clone = os.path.join(tmp, "qemu")
        pdir = os.path.join(tmp, "patches")
        run(["git", "clone", "-q", "--shared", TREE, clone])
        run([EXPORT, clone, pdir])
        run([EXPORT, "--check", clone, pdir])

        with open(os.path.join(clone, "VERSION"), "a", encoding="utf-8") as f:
            f.write("\n")
        proc = run([EXPORT, "--check", clone, pdir], check=False)
        assert proc.returncode != 0, proc.stdout
        assert "VERSION" in proc.stdout, proc.stdout

        git("commit", "-q", "-a", "-s", "-m", "version: test change", cwd=clone)
        proc = run([EXPORT, "--check", clone, pdir], check=False)
        assert proc.returncode != 0, proc.stdout
        assert "version-test-change.patch" in proc.stdout, proc.stdout

        run([EXPORT, clone, pdir])
        run([EXPORT, "--check", clone, pdir])
        # an extra patch that the tree does not have is reported too
        git("reset", "-q", "--hard", "HEAD~1", cwd=clone)
        proc = run([EXPORT, "--check", clone, pdir], check=False)
        assert proc.returncode != 0, proc.stdout
        assert "version-test-change.patch" in proc.stdout, proc.stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_cover_letter():
    """patches/0000-cover-letter.patch (git format-patch --cover-letter,
    refreshed by make export) is not part of the series, counts its
    patches in the subject, and lists every patch's subject."""
    names = series()
    assert not any(n.startswith("0000-") for n in names), names
    with open(os.path.join(PATCHES, "0000-cover-letter.patch"),
              encoding="utf-8") as f:
        cover = f.read()
    subject = re.search(r"^Subject: \[PATCH 0+/(\d+)\] (.+)$", cover, re.M)
    assert subject, cover[:300]
    assert int(subject.group(1)) == len(names), subject.group(0)
    assert "***" not in cover, "the cover letter still has a placeholder"
    shortlog = re.sub(r"\n    ", " ", cover.split("\n\n", 1)[1])
    for name in names:
        with open(os.path.join(PATCHES, name), encoding="utf-8") as f:
            head = f.read().split("\n\n", 1)[0]
        subj = re.search(r"^Subject: \[PATCH\] (.*(?:\n .*)*)", head, re.M)
        title = re.sub(r"\n(?= )", "", subj.group(1))
        assert "\n  %s\n" % title in shortlog, \
            "%s is not in the cover letter's shortlog" % title


# The two series, and where the second's differences are listed
BASES = {"10.0": ("patches", os.path.join("build", "qemu")),
         "10.2": ("patches-10.2", os.path.join("build", "qemu-10.2"))}
DIFFERENCES = os.path.join(TOP, "patches-10.2", "DIFFERENCES")


def base_tree(base):
    """The working tree of @base's series, made (scripts/tree.sh) when
    missing; the one under test when it is @base's."""
    pdir, tree = (os.path.join(TOP, p) for p in BASES[base])
    if os.path.realpath(pdir) == os.path.realpath(PATCHES):
        return TREE
    if not os.path.isdir(os.path.join(tree, ".git")):
        env = dict(os.environ, QGA_BASE=base, QGA_PATCHES=pdir)
        proc = subprocess.run([os.path.join(TOP, "scripts", "tree.sh"), tree],
                              env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stdout
    return tree


def expected_differences():
    """patches-10.2/DIFFERENCES: ({10.2 patch number: why it differs},
    {numbers of 10.0 patches that 10.2 does without})"""
    want, dropped = {}, set()
    with open(DIFFERENCES, encoding="utf-8") as f:
        text = f.read()
    for m in re.finditer(r"^(\d{4})-\S+\.patch: (.+)$", text, re.M):
        want[int(m.group(1))] = m.group(2)
    for m in re.finditer(r"^Dropped on 10\.2 \(no counterpart\): "
                         r"((?:10\.0's\s+\d{4}-\S+\.patch,?\s*)+)", text, re.M):
        dropped |= {int(n) for n in re.findall(r"10\.0's\s+(\d{4})-",
                                               m.group(1))}
    return want, dropped


def test_series_in_step():
    """The 10.0 and 10.2 series hold the same patches in the same order,
    and git range-diff between them shows a difference exactly where
    patches-10.2/DIFFERENCES says the base requires one."""
    trees = {b: base_tree(b) for b in BASES}
    tmp = tempfile.mkdtemp(prefix="qga-range-diff-")
    try:
        repo = os.path.join(tmp, "r.git")
        git("init", "-q", "--bare", repo, cwd=tmp)
        # both trees' objects, without copying them
        with open(os.path.join(repo, "objects", "info", "alternates"), "w",
                  encoding="utf-8") as f:
            for tree in trees.values():
                f.write(os.path.join(os.path.abspath(tree), ".git",
                                     "objects") + "\n")
        ranges = []
        for base, tree in trees.items():
            for ref in ("upstream", "HEAD"):
                sha = git("rev-parse", ref, cwd=tree).stdout.strip()
                git("update-ref", "refs/%s/%s" % (base, ref), sha, cwd=repo)
            ranges.append("refs/%s/upstream..refs/%s/HEAD" % (base, base))
        out = git("-c", "core.abbrev=12", "range-diff", "--no-color",
                  *ranges, cwd=repo).stdout
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pairs = re.findall(r"^\s*(\d+|-):\s+\S+ ([=!<>]) \s*(\d+|-):", out, re.M)
    assert pairs, out
    want, dropped = expected_differences()
    # 10.0's patch N is 10.2's N minus the dropped patches before it
    bad = [p for p in pairs
           if (p[1] == "<" and int(p[0]) not in dropped) or p[1] == ">"
           or (p[1] in "=!" and int(p[2]) != int(p[0]) - len(
               [d for d in dropped if d < int(p[0])]))]
    assert not bad, "the series are not in step:\n" + out
    gone = {int(p[0]) for p in pairs if p[1] == "<"}
    assert gone == dropped, "DIFFERENCES says %s are dropped, range-diff " \
        "%s:\n%s" % (sorted(dropped), sorted(gone), out)
    changed = {int(p[2]) for p in pairs if p[1] == "!"}
    assert changed == set(want), (
        "patches that differ: %s; patches-10.2/DIFFERENCES lists: %s\n%s"
        % (sorted(changed), sorted(want), out))
    print("%d patches of 10.0: %d identical on 10.2, %d differ as listed "
          "(%s), %d dropped (%s)"
          % (len(pairs), len(pairs) - len(changed) - len(gone), len(changed),
             ", ".join(str(n) for n in sorted(changed)), len(gone),
             ", ".join(str(n) for n in sorted(gone))))
