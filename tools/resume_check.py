#!/usr/bin/env python
"""Check that a config resumes exactly: kill training at random moments, resume, compare.

Trains the config once without interruption, then again while stopping the process at
several moments (SIGKILL by default: nothing runs after it, not even a checkpoint write in
progress) and resuming each time with ``--resume``. The two final checkpoints
(``model_final.pth``, or the sharded ``model_final/`` directory: weights, optimizer,
schedule, trainer and hook states) must be bit-identical, and ``metrics.json`` must hold
every line of the uninterrupted run with the same metrics, each iteration once (a preempted
run's extra line at the iteration it stopped at is allowed); see ``resume_judge.py``. Prints
a verdict and exits with 0 (exact) or 1 (not exact, or a run failed).

Kill moments are chosen at random (``--seed``) among: right after a ``Saving checkpoint``
log line (the write is then in progress), and at a random time within the run. The whole
process group is killed, as a lost machine would be: every spawned worker dies with it.
Run on CPU with a fixed ``SEED``; GPU kernels are not bit-reproducible in general.

Examples:
    python tools/resume_check.py --config-file configs/Digits/cnn.yaml --kills 3 \
        SOLVER.MAX_ITER 100 SOLVER.CHECKPOINT_PERIOD 10
    python tools/resume_check.py --config-file my.yaml --num-gpus 2 --signal SIGTERM
"""

import argparse
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import torch

from engine_lib.engine import PREEMPTED_EXIT_CODE

# The judging lives next to this script (a script's own directory is on the path only when
# it runs as one, not when a test loads it by file name).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resume_judge import compare_checkpoints, metrics_problems  # noqa: E402

__all__ = [
    "KillPoint",
    "RunResult",
    "Verdict",
    "random_kill_points",
    "train_command",
    "run_training",
    "compare_checkpoints",
    "metrics_problems",
    "resume_check",
    "main",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
SAVING = r"Saving checkpoint to "
# Printed by the engine's logger at each periodic metric write.
ITER_LINE = r"\biter: \d+"


@dataclasses.dataclass(frozen=True)
class KillPoint:
    """When to stop one training run.

    Args:
        pattern (str): a regular expression matched against each output line; None: count
            time from the start only.
        count (int): stop at the ``count``-th matching line (1-based).
        delay (float): then wait this many seconds before sending the signal.
        signal (str): the signal's name, e.g. ``"SIGKILL"`` or ``"SIGTERM"``.
        group (bool): send it to the whole process group (launcher and workers, as a lost
            machine or a scheduler does); False: to the launching process only.
    """

    pattern: Optional[str] = SAVING
    count: int = 1
    delay: float = 0.0
    signal: str = "SIGKILL"
    group: bool = True

    def describe(self) -> str:
        where = f"line {self.count} matching {self.pattern!r}" if self.pattern else "the start"
        whom = "" if self.group else " to the launcher only"
        return f"{self.signal}{whom} {self.delay:.2f}s after {where}"


@dataclasses.dataclass
class RunResult:
    """One training process: its exit code, whether we signalled it, and its output."""

    returncode: int
    signalled: bool
    output: str


def train_command(
    config_file: str,
    output_dir: str,
    opts: Sequence[str] = (),
    *,
    resume: bool = False,
    num_gpus: int = 1,
) -> List[str]:
    """The ``tools/train_net.py`` command line of one run (``--dist-url auto`` with N > 1)."""
    cmd = [sys.executable, TRAIN_NET, "--config-file", config_file]
    if num_gpus > 1:
        cmd += ["--num-gpus", str(num_gpus), "--dist-url", "auto"]
    if resume:
        cmd.append("--resume")
    return cmd + [*opts, "OUTPUT_DIR", output_dir]


def _env() -> Dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def run_training(
    cmd: Sequence[str], kill: Optional[KillPoint] = None, timeout: float = 600.0
) -> RunResult:
    """Run a training command to its end, or until ``kill`` says to stop it.

    The process runs in its own session, so that a signal can go to the whole process group
    (the launcher and its workers), like a preempted or lost machine.

    Args:
        cmd (list[str]): the command.
        kill (KillPoint, optional): when and how to stop it; None: let it finish.
        timeout (float): seconds before the run is killed and reported as failed.

    Returns:
        RunResult: the exit code (negative: killed by that signal), whether a signal was sent,
        and the combined stdout/stderr.
    """
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
    )
    lines: List[str] = []
    signalled = False

    def on_timeout() -> None:
        lines.append(f"[resume_check] timed out after {timeout}s\n")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # A watchdog rather than a check per output line: a hung run may print nothing.
    watchdog = threading.Timer(timeout, on_timeout)
    watchdog.start()
    pattern = re.compile(kill.pattern) if kill is not None and kill.pattern else None
    seen = 0

    finished = threading.Event()

    def send() -> None:
        nonlocal signalled
        if finished.wait(kill.delay):
            return  # the run ended first
        try:
            if kill.group:
                os.killpg(proc.pid, getattr(signal, kill.signal))
            else:
                os.kill(proc.pid, getattr(signal, kill.signal))
            signalled = True
        except ProcessLookupError:
            pass  # it finished first

    try:
        if kill is not None and pattern is None:
            # A pure timer: read the output in the meantime so the pipe never fills up.
            threading.Thread(target=send, daemon=True).start()
        for line in proc.stdout:
            lines.append(line)
            if pattern is not None and not signalled and pattern.search(line):
                seen += 1
                if seen == kill.count:
                    send()
        returncode = proc.wait()
    finally:
        finished.set()
        watchdog.cancel()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return RunResult(returncode, signalled, "".join(lines))


def _load(path: str) -> Dict[str, Any]:
    """A checkpoint as one dict: a ``.pth`` file, or a sharded (DCP) directory in full."""
    if not os.path.isdir(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        merged = os.path.join(tmp, "merged.pth")
        dcp_to_torch_save(path, merged)  # every rank's shards, model and optimizer
        data = torch.load(merged, map_location="cpu", weights_only=True)
    data.update(torch.load(os.path.join(path, "extra_state.pth"), weights_only=True))
    return data


def _final(directory: str) -> str:
    """``model_final.pth``, or ``model_final`` when the run saves sharded checkpoints."""
    sharded = os.path.join(directory, "model_final")
    return sharded if os.path.isdir(sharded) else os.path.join(directory, "model_final.pth")


def random_kill_points(
    n: int, duration: float, seed: int, signal_name: str = "SIGKILL"
) -> List[KillPoint]:
    """``n`` random kill moments: half during a checkpoint write, half at a random time.

    Args:
        n (int): how many.
        duration (float): seconds an uninterrupted run takes (bounds the random times).
        seed (int): seed of the choice.
        signal_name (str): the signal to send.
    """
    rng = random.Random(seed)
    points = []
    for i in range(n):
        if i % 2 == 0:
            points.append(KillPoint(SAVING, rng.randint(1, 2), rng.uniform(0.0, 0.02), signal_name))
        else:
            points.append(KillPoint(None, 1, rng.uniform(0.2, 0.9) * duration, signal_name))
    return points


@dataclasses.dataclass
class Verdict:
    """The outcome of :func:`resume_check`: ``exact`` and the reasons when it is not."""

    exact: bool
    problems: List[str]
    runs: List[str]


def resume_check(
    config_file: str,
    opts: Sequence[str],
    work_dir: str,
    kills: Sequence[KillPoint],
    *,
    num_gpus: int = 1,
    expected_dir: Optional[str] = None,
    timeout: float = 600.0,
) -> Verdict:
    """Train uninterrupted and interrupted-then-resumed, and compare the results.

    Args:
        config_file (str): the config.
        opts (list[str]): config overrides.
        work_dir (str): holds ``uninterrupted/`` and ``interrupted/``.
        kills (list[KillPoint]): one per interrupted run, in order; after the last, the run
            is resumed once more and left to finish.
        num_gpus (int): processes per run (gloo on CPU when > 1).
        expected_dir (str, optional): a finished uninterrupted run to compare with, instead
            of training one in ``work_dir/uninterrupted``.
        timeout (float): seconds allowed per run.

    Returns:
        Verdict: whether the final checkpoints are bit-identical, and the problems found.
    """
    problems: List[str] = []
    runs: List[str] = []
    stops: List[int] = []
    if expected_dir is None:
        expected_dir = os.path.join(work_dir, "uninterrupted")
        result = run_training(train_command(config_file, expected_dir, opts, num_gpus=num_gpus))
        if result.returncode != 0:
            return Verdict(False, ["the uninterrupted run failed:\n" + result.output[-4000:]], [])
    out = os.path.join(work_dir, "interrupted")
    for attempt, kill in enumerate([*kills, None]):
        if kill is not None and os.path.exists(_final(out)):
            runs.append(f"run {attempt}: training already finished; {kill.describe()} skipped")
            continue
        cmd = train_command(config_file, out, opts, resume=attempt > 0, num_gpus=num_gpus)
        result = run_training(cmd, kill, timeout)
        how = kill.describe() if kill is not None else "left to finish"
        runs.append(f"run {attempt} ({how}): exit code {result.returncode}")
        if result.returncode == PREEMPTED_EXIT_CODE:
            stops += [int(m) for m in _PREEMPTED_AT.findall(result.output)]
        expected_codes = {0}
        if result.signalled:
            expected_codes |= _codes_for(kill.signal)
        if result.returncode not in expected_codes:
            problems.append(
                f"run {attempt} ({how}) exited with {result.returncode}, expected one of "
                f"{sorted(expected_codes)}:\n{result.output[-4000:]}"
            )
            return Verdict(False, problems, runs)
    final = _final(out)
    if not os.path.exists(final):
        return Verdict(False, problems + [f"{final} was not written"], runs)
    diffs = compare_checkpoints(_load(_final(expected_dir)), _load(final))
    problems += [f"{os.path.basename(final)} differs at {d}" for d in diffs]
    problems += metrics_problems(out, expected_dir, stops)
    return Verdict(not problems, problems, runs)


# The preemption hook's log line: "Preempted (SIGTERM): saving ..., exiting at iteration N".
_PREEMPTED_AT = re.compile(r"Preempted \(\w+\): saving \S+, exiting at iteration (\d+)")


def _codes_for(signal_name: str) -> set:
    """Exit codes a run stopped by this signal may end with."""
    codes = {-getattr(signal, signal_name), 128 + getattr(signal, signal_name)}
    if signal_name != "SIGKILL":
        codes.add(PREEMPTED_EXIT_CODE)
    return codes


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code (0: exact resume)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="the config to check")
    parser.add_argument("--kills", type=int, default=3, help="interruptions (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per run")
    parser.add_argument(
        "--signal", default="SIGKILL", help="signal to stop runs with (default SIGKILL)"
    )
    parser.add_argument("--work-dir", default="", help="keep the runs here (default: temp)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)

    work_dir = args.work_dir or tempfile.mkdtemp(prefix="resume_check_")
    expected = os.path.join(work_dir, "uninterrupted")
    start = time.monotonic()
    result = run_training(
        train_command(args.config_file, expected, args.opts, num_gpus=args.num_gpus)
    )
    if result.returncode != 0:
        print(result.output[-4000:])
        print("VERDICT: FAILED: the uninterrupted run did not finish")
        return 1
    duration = time.monotonic() - start
    kills = random_kill_points(args.kills, duration, args.seed, args.signal)
    verdict = resume_check(
        args.config_file,
        args.opts,
        work_dir,
        kills,
        num_gpus=args.num_gpus,
        expected_dir=expected,
    )
    for line in verdict.runs:
        print(line)
    if verdict.exact:
        print(f"VERDICT: EXACT: resumed run is bit-identical to the uninterrupted one ({work_dir})")
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
        return 0
    for problem in verdict.problems:
        print(problem)
    print(f"VERDICT: NOT EXACT: {len(verdict.problems)} problem(s); runs kept in {work_dir}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
