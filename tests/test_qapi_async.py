"""The QAPI generator's checks of the 'async' command flag.

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


def test_qapi_async_accepted():
    proc = qapi_gen("'async': true")
    assert proc.returncode == 0, proc.stdout
    # registered as an asynchronous command, with the QmpReturn handle
    assert "qmp_register_async_command" in proc.commands, proc.commands
    assert "QCO_ASYNC" in proc.commands, proc.commands
    assert "void qmp_marshal_slow(QDict *args, QmpReturn *qret)" in \
        proc.commands, proc.commands
    assert "void qmp_slow_return(QmpReturn *qret)" in proc.commands, \
        proc.commands


def test_qapi_async_with_allow_oob_rejected():
    proc = qapi_gen("'async': true, 'allow-oob': true")
    assert proc.returncode != 0, proc.stdout
    assert "flags 'async' and 'allow-oob' are incompatible" in proc.stdout, \
        proc.stdout


def test_qapi_async_with_coroutine_rejected():
    proc = qapi_gen("'async': true, 'coroutine': true")
    assert proc.returncode != 0, proc.stdout
    assert "flags 'async' and 'coroutine' are incompatible" in proc.stdout, \
        proc.stdout


def test_qapi_async_must_be_bool():
    proc = qapi_gen("'async': 'yes'")
    assert proc.returncode != 0, proc.stdout
    # QAPI's own message for flags (stock QAPI says "has unknown key 'async'")
    assert "flag 'async' may only use true value" in proc.stdout, proc.stdout
