"""Run the docs' commands and snippets, each in a forked child of one warm process.

Started by ``tests/docs/test_doc_commands.py`` as ``python doc_runner.py``. Importing torch,
engine_lib and scikit-learn takes most of a short run's 7 s on 2 cores, so this process imports
them once and then forks a child per job: the child gets a fresh copy of the interpreter with
those modules loaded, changes to the job's directory, and runs the script as ``__main__`` with
the job's ``sys.argv`` (as ``python SCRIPT ARGS`` would), or the snippet's code. Processes the
child starts itself (``--num-gpus 2``) are ordinary spawned interpreters.

Protocol: one JSON job per line on stdin, one JSON result per line on stdout::

    {"kind": "script", "argv": ["tools/train_net.py", ...], "cwd": ..., "log": ..., "env": {}}
    {"kind": "code", "code": ..., "filename": "README.md:151", "argv": [...], "cwd": ..., ...}
    -> {"rc": 0, "seconds": 1.2}
"""

import json
import multiprocessing.process
import os
import runpy
import sys
import time
import traceback

__all__ = ["main"]

# Nothing here may start threads or run a kernel before a fork: only imports.
_PRELOAD = (
    "torch",
    "torchvision",
    "sklearn.datasets",
    "sklearn.model_selection",
    "engine_lib.config",
    "engine_lib.engine",
    "engine_lib.data",
    "engine_lib.modeling",
    "engine_lib.evaluation",
    "engine_lib.checkpoint",
    "engine_lib.distillation",
    "torch.utils.tensorboard",
)


def _preload() -> None:
    for name in _PRELOAD:
        try:
            __import__(name)
        except ImportError:  # an optional package: the child imports (or misses) it itself
            pass


def _child(job: dict) -> int:
    """Run one job in this (forked) process; return its exit code."""
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdin = open(os.devnull)
    os.chdir(job["cwd"])
    # A spawned worker finds a relative main script from the directory its parent started in
    # (read once, when multiprocessing was imported): make that this job's directory, as for
    # a `python SCRIPT` started there.
    multiprocessing.process.ORIGINAL_DIR = os.getcwd()
    os.environ.update(job.get("env", {}))
    try:
        if job["kind"] == "script":
            script = job["argv"][0]
            sys.argv = list(job["argv"])
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = list(job.get("argv") or [job["filename"]])
            sys.path[0] = os.getcwd()
            code = compile(job["code"], job["filename"], "exec")
            exec(code, {"__name__": "__main__", "__file__": job["filename"]})
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    """Serve jobs from stdin until it closes."""
    _preload()
    out = sys.stdout
    for line in sys.stdin:
        job = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(job)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        out.write(json.dumps({"rc": rc, "seconds": time.perf_counter() - start}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
