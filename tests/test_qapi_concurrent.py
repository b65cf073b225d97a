"""The QAPI generator's checks of the 'concurrent' command flag.

(Kept here rather than as new tests/qapi-schema/*.err files in the series,
which checkpatch cannot pass: .err/.out files cannot carry an SPDX tag.)
"""

import os
import subprocess
import tempfile

from harness import TREE

SCHEMA = """{ 'pragma': { 'doc-required': false } }
{ 'command': 'slow', %s }
"""


def qapi_gen(flags):
    with tempfile.TemporaryDirectory(prefix="qga-qapi-") as tmp:
        path = os.path.join(tmp, "schema.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(SCHEMA % flags)
        proc = subprocess.run(
            ["/usr/bin/python3", os.path.join(TREE, "scripts", "qapi-gen.py"),
             "-o", tmp, path], text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, check=False)
        proc.commands = ""
        if proc.returncode == 0:
            for name in ("qapi-commands.c", "qapi-init-commands.c"):
                with open(os.path.join(tmp, name), encoding="utf-8") as f:
                    proc.commands += f.read()
        return proc


def test_qapi_concurrent_accepted():
    proc = qapi_gen("'coroutine': true, 'concurrent': true")
    assert proc.returncode == 0, proc.stdout
    # an ordinary coroutine command, registered as concurrent
    assert "QCO_COROUTINE | QCO_CONCURRENT" in proc.commands, proc.commands
    assert ("void coroutine_fn qmp_marshal_slow(QDict *args, QObject **ret,"
            " Error **errp)") in proc.commands, proc.commands


def test_qapi_coroutine_alone_is_not_concurrent():
    proc = qapi_gen("'coroutine': true")
    assert proc.returncode == 0, proc.stdout
    assert "QCO_COROUTINE" in proc.commands, proc.commands
    assert "QCO_CONCURRENT" not in proc.commands, proc.commands


def test_qapi_concurrent_without_coroutine_rejected():
    proc = qapi_gen("'concurrent': true")
    assert proc.returncode != 0, proc.stdout
    assert "flag 'concurrent' requires flag 'coroutine'" in proc.stdout, \
        proc.stdout


def test_qapi_concurrent_must_be_true():
    proc = qapi_gen("'coroutine': true, 'concurrent': false")
    assert proc.returncode != 0, proc.stdout
    # QAPI's own message for flags (stock QAPI says "has unknown key
    # 'concurrent'")
    assert "flag 'concurrent' may only use true value" in proc.stdout, \
        proc.stdout
