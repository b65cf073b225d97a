"""QEMU's Python linters on the Python code that the series changes.

QEMU's maintainers run flake8, isort, mypy and pylint on scripts/qapi/,
and the series adds scripts/qapi/qga_proxy.py and changes other generator
modules (and, on 10.0, the Sphinx extension docs/sphinx/qapidoc_legacy.py).
Where the configuration lives depends on the base:

- QEMU 10.0: scripts/qapi/ has its own (mypy.ini, pylintrc, .flake8 and
  .isort.cfg), used from scripts/;
- QEMU 10.2: those moved into python/setup.cfg, and python/tests/qapi-*.sh
  run the linters from python/, on scripts/qapi/ and on the Sphinx
  extension (qapidoc.py, qapi_domain.py); pylint still takes
  scripts/qapi/pylintrc.

The tools are Debian bookworm's (flake8 5.0, isort 5.6, mypy 1.0,
pylint 2.16).  QEMU's pylintrc disables 'too-many-positional-arguments',
which is newer than pylint 2.16; pylint reports that as an unknown option
value, so that one message is disabled here.  Upstream files that the
series does not touch are not judged by pylint (with pylint 2.16,
scripts/qapi/backend.py gets too-few-public-methods).
"""

import os
import tempfile

from harness import TREE
from harness import run as run_tool

SCRIPTS = os.path.join(TREE, "scripts")
PYTHON = os.path.join(TREE, "python")

# Debian's, as scripts/deps.sh installs them, whatever else is on PATH
TOOLS = {t: "/usr/bin/" + t for t in ("flake8", "isort", "mypy", "pylint")}

PYLINT = ["--disable=unknown-option-value"]

if os.path.exists(os.path.join(SCRIPTS, "qapi", ".flake8")):
    # QEMU 10.0: scripts/qapi's own files, from scripts/
    LINT_CWD = SCRIPTS
    FLAKE8 = ["flake8", "--config=qapi/.flake8"]
    ISORT = ["isort", "--settings-path=qapi/", "--check-only", "--diff"]
    MYPY = ["mypy", "--config-file=qapi/mypy.ini"]
    PYLINT = ["pylint", "--rcfile=qapi/pylintrc"] + PYLINT
    # the Sphinx extension: flake8's defaults, from the top
    SPHINX_CWD = TREE
    SPHINX_UPSTREAM = []
    SPHINX_FLAKE8 = ["flake8"]
    SPHINX_ISORT = []
else:
    # QEMU 10.2 and later: python/setup.cfg, from python/, as
    # python/tests/qapi-*.sh run them
    LINT_CWD = PYTHON
    FLAKE8 = ["flake8"]
    ISORT = ["isort", "--sp", ".", "--check-only", "--diff"]
    MYPY = ["mypy"]
    PYLINT = ["pylint", "--rcfile=../scripts/qapi/pylintrc"] + PYLINT
    SPHINX_CWD = PYTHON
    SPHINX_UPSTREAM = ["docs/sphinx/qapidoc.py", "docs/sphinx/qapi_domain.py"]
    SPHINX_FLAKE8 = FLAKE8
    # qapi-isort.sh: "compat" is a local module of docs/sphinx
    SPHINX_ISORT = ISORT + ["-p", "compat"]


def run(cmd, cwd):
    """Run @cmd (Debian's linters by their names); returns (status,
    output)."""
    proc = run_tool([TOOLS.get(cmd[0], cmd[0])] + cmd[1:], cwd=cwd,
                    check=False)
    return proc.returncode, proc.stdout


def series_files(prefix, may_be_none=False):
    """Python files under @prefix that the series adds or changes, as
    paths relative to the linters' directory."""
    _, out = run(["git", "diff", "--name-only", "--diff-filter=AM",
                  "upstream..HEAD", "--", prefix], cwd=TREE)
    files = [f for f in out.split() if f.endswith(".py")]
    assert files or may_be_none, ("the series changes no Python file "
                                  "under " + prefix)
    return files


def rel(path, cwd=LINT_CWD):
    """@path (relative to the tree's top) as the linters in @cwd take
    it."""
    return os.path.relpath(os.path.join(TREE, path), cwd)


def check(cmd, cwd=LINT_CWD):
    rc, out = run(cmd, cwd)
    assert rc == 0, "%s (in %s) failed with %d:\n%s" % (
        " ".join(cmd), cwd, rc, out)
    paths = [a for a in cmd[1:]
             if not a.startswith("-") and a.endswith((".py", "/"))]
    print("%s: clean" % " ".join(cmd[:1] + paths))


def test_linters_report_problems():
    """The linters as we run them do find problems: a clean result for
    the series means something."""
    bad = ("import sys\n"
           "import os\n"
           "def f(x) -> int:\n"
           "    return x +  'a'\n")
    with tempfile.TemporaryDirectory(prefix="qga-lint-",
                                     dir=os.path.join(SCRIPTS, "qapi")) as d:
        path = os.path.join(d, "bad.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(bad)
        path = os.path.relpath(path, LINT_CWD)
        rc, out = run(FLAKE8 + [path], LINT_CWD)
        assert rc != 0 and "F401" in out and "E302" in out, out
        rc, out = run(ISORT + [path], LINT_CWD)
        assert rc != 0 and "incorrectly sorted" in out, out
        rc, out = run(MYPY + [path], LINT_CWD)
        assert rc != 0 and "no-untyped-def" in out, out
        rc, out = run(PYLINT + [path], LINT_CWD)
        assert rc != 0 and "unused-import" in out, out


def test_qapi_generator_flake8_isort_mypy():
    """scripts/qapi/ as a whole, as QEMU's maintainers check it."""
    qapi = rel("scripts/qapi") + "/"
    check(FLAKE8 + [qapi])
    check(ISORT + [qapi])
    check(MYPY + [qapi])


def test_qga_qmp_schema_script_lint():
    """scripts/qga-qmp-schema.py, which the series adds beside
    qapi-gen.py, under scripts/qapi's configuration."""
    script = rel("scripts/qga-qmp-schema.py")
    check(FLAKE8 + [script])
    check(ISORT + [script])
    check(MYPY + [script])
    check(PYLINT + [script])


def test_qapi_generator_pylint():
    check(PYLINT + [rel(f) for f in series_files("scripts/qapi")])


def test_sphinx_extension_lint():
    """The Sphinx extension docs/sphinx/: on 10.0 it is not under
    scripts/qapi's configuration, and flake8 with its defaults is clean
    on the files the series changes; from 10.2 on, QEMU's python tests
    check qapidoc.py and qapi_domain.py with flake8 and isort under
    python/setup.cfg, and so do we (with whatever else the series
    changes there: on 10.2, nothing)."""
    files = sorted(set(SPHINX_UPSTREAM) |
                   set(series_files("docs/sphinx", bool(SPHINX_UPSTREAM))))
    files = [rel(f, SPHINX_CWD) for f in files]
    check(SPHINX_FLAKE8 + files, SPHINX_CWD)
    if SPHINX_ISORT:
        check(SPHINX_ISORT + files, SPHINX_CWD)


def test_python_package_lint():
    """python/ (the qemu package: qemu-ga-client), under python/setup.cfg
    as QEMU's python tests run the linters: flake8, isort, mypy and
    pylint on the files the series changes."""
    python = os.path.join(TREE, "python")
    files = [os.path.relpath(os.path.join(TREE, f), python)
             for f in series_files("python")]
    check(["flake8"] + files, python)
    check(["isort", "--check-only", "--diff"] + files, python)
    check(["mypy"] + files, python)
    proc = run_tool(["env", "PYTHONPATH=" + python, TOOLS["pylint"],
                     "--rcfile=setup.cfg", "--disable=unknown-option-value"]
                    + files, cwd=python, check=False)
    assert proc.returncode == 0, proc.stdout
    print("pylint %s: clean" % " ".join(files))
