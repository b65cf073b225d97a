#!/usr/bin/python3
"""tests/run.py: run the project's checks and print 'N passed, N failed'.

Every check is a function named test_* in a module tests/test_*.py.  A check
passes when it returns and fails when it raises.  Checks run one at a time,
in file order; the output of a failing check is shown, and the run ends with
one summary line and a non-zero exit status when anything failed.

  tests/run.py                 all checks
  tests/run.py -k agent        only checks whose name contains 'agent'
  tests/run.py --list          list the checks

The checks are assert statements, which python3 -O and PYTHONOPTIMIZE
remove; run.py then runs itself again without them.
"""

import argparse
import glob
import importlib.util
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def collect():
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        funcs = [(n, f) for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f)
                 and f.__module__ == name]
        funcs.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
        tests += [("%s.%s" % (name, n), f) for n, f in funcs]
    return tests


def asserts_work():
    try:
        assert False
    except AssertionError:
        return True
    return False


def main():
    if sys.flags.optimize:
        env = dict(os.environ)
        env.pop("PYTHONOPTIMIZE", None)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)]
                  + sys.argv[1:], env)
    if not asserts_work():
        raise RuntimeError("assert statements are disabled: the checks "
                           "would pass without checking anything")
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[],
                    help="run only checks whose name contains this")
    ap.add_argument("--list", action="store_true")
    opts = ap.parse_args()
    sys.path.insert(0, HERE)
    tests = collect()
    if opts.k:
        tests = [t for t in tests if any(k in t[0] for k in opts.k)]
    if opts.list:
        for name, _ in tests:
            print(name)
        return 0
    passed, failed = 0, []
    for name, func in tests:
        t0 = time.monotonic()
        print("RUN  %s" % name, flush=True)
        try:
            func()
        except Exception:  # pylint: disable=broad-except
            failed.append(name)
            print(traceback.format_exc().rstrip(), flush=True)
            print("FAIL %s (%.1f s)" % (name, time.monotonic() - t0),
                  flush=True)
        else:
            passed += 1
            print("PASS %s (%.1f s)" % (name, time.monotonic() - t0),
                  flush=True)
    if failed:
        print("\nfailed:\n  " + "\n  ".join(failed))
    if not tests:
        print("no checks selected")
        return 1
    print("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
