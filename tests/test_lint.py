"""QEMU's Python linters on the Python code that the series changes.

scripts/qapi/ has its own configuration (mypy.ini, pylintrc, .flake8 and
.isort.cfg); QEMU's maintainers run flake8, isort, mypy and pylint on it.  The series adds scripts/qapi/qga_proxy.py and changes
other generator modules and the Sphinx extension docs/sphinx/qapidoc.py.

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

# Debian's, as scripts/deps.sh installs them, whatever else is on PATH
TOOLS = {t: "/usr/bin/" + t for t in ("flake8", "isort", "mypy", "pylint")}


def run(cmd, cwd):
    """Run @cmd (Debian's linters by their names); returns (status,
    output)."""
    proc = run_tool([TOOLS.get(cmd[0], cmd[0])] + cmd[1:], cwd=cwd,
                    check=False)
    return proc.returncode, proc.stdout


def series_files(prefix):
    """Python files under @prefix that the series adds or changes."""
    _, out = run(["git", "diff", "--name-only", "--diff-filter=AM",
                  "upstream..HEAD", "--", prefix], cwd=TREE)
    files = [f for f in out.split() if f.endswith(".py")]
    assert files, "the series changes no Python file under " + prefix
    return files


def check(cmd, cwd):
    rc, out = run(cmd, cwd)
    assert rc == 0, "%s (in %s) failed with %d:\n%s" % (
        " ".join(cmd), cwd, rc, out)
    print("%s: clean" % " ".join(cmd[:1] + [a for a in cmd[1:]
                                              if not a.startswith("-")]))


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
        rel = os.path.relpath(path, SCRIPTS)
        rc, out = run(["flake8", "--config=qapi/.flake8", rel], SCRIPTS)
        assert rc != 0 and "F401" in out and "E302" in out, out
        rc, out = run(["isort", "--settings-path=qapi/", "--check-only",
                       rel], SCRIPTS)
        assert rc != 0 and "incorrectly sorted" in out, out
        rc, out = run(["mypy", "--config-file=qapi/mypy.ini", rel], SCRIPTS)
        assert rc != 0 and "no-untyped-def" in out, out
        rc, out = run(["pylint", "--rcfile=qapi/pylintrc",
                       "--disable=unknown-option-value", rel], SCRIPTS)
        assert rc != 0 and "unused-import" in out, out


def test_qapi_generator_flake8_isort_mypy():
    """scripts/qapi/ as a whole, as QEMU's maintainers check it."""
    check(["flake8", "--config=qapi/.flake8", "qapi/"], SCRIPTS)
    check(["isort", "--settings-path=qapi/", "--check-only", "--diff",
           "qapi/"], SCRIPTS)
    check(["mypy", "--config-file=qapi/mypy.ini", "qapi/"], SCRIPTS)


def test_qga_qmp_schema_script_lint():
    """scripts/qga-qmp-schema.py, which the series adds beside
    qapi-gen.py, under scripts/qapi's configuration."""
    script = "qga-qmp-schema.py"
    check(["flake8", "--config=qapi/.flake8", script], SCRIPTS)
    check(["isort", "--settings-path=qapi/", "--check-only", "--diff",
           script], SCRIPTS)
    check(["mypy", "--config-file=qapi/mypy.ini", script], SCRIPTS)
    check(["pylint", "--rcfile=qapi/pylintrc",
           "--disable=unknown-option-value", script], SCRIPTS)


def test_qapi_generator_pylint():
    files = [os.path.relpath(os.path.join(TREE, f), SCRIPTS)
             for f in series_files("scripts/qapi")]
    check(["pylint", "--rcfile=qapi/pylintrc",
           "--disable=unknown-option-value"] + files, SCRIPTS)


def test_sphinx_extension_flake8():
    """docs/sphinx/ is not under scripts/qapi's configuration; flake8
    with its defaults is clean on the files the series changes."""
    check(["flake8"] + series_files("docs/sphinx"), TREE)


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
