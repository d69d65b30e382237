"""Run many command lines of the tools in one process: torch is imported once, not per case.

Usage: ``python _driver.py CASES.json RESULTS.json``. CASES.json holds a list of
``{"id": ..., "argv": [script, arg, ...]}``; each script runs as ``__main__`` (as
``python script arg ...`` would) with its stdout and stderr captured. RESULTS.json maps each
id to ``{"rc", "stdout", "stderr"}``. An exception escaping a script is printed with its
traceback to the captured stderr and gives rc 1, as the interpreter would.
"""

import contextlib
import io
import json
import runpy
import sys
import time
import traceback


def run_one(argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = list(argv)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(argv[0], run_name="__main__")
            rc = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                rc = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                rc = 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
    cases_file, results_file = sys.argv[1:3]  # before the cases replace sys.argv
    with open(cases_file) as f:
        cases = json.load(f)
    results = {}
    for case in cases:
        start = time.perf_counter()
        results[case["id"]] = run_one(case["argv"])
        results[case["id"]]["seconds"] = time.perf_counter() - start
    with open(results_file, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
