#!/usr/bin/env python
"""Mutation testing of a curated list of critical lines: does a test catch each change?

Each mutation replaces one exact snippet of ``engine_lib`` (an atomic rename, an RNG restore,
a finiteness check, a ``weights_only`` load, a mean over ranks, ...) with a plausible mistake,
then runs the tests meant to catch it. A mutation is *caught* when those tests fail, and
*survived* when they pass: then the tests claim more than they check.

The mutations are applied to a temporary copy of the repository, never to the working tree,
so an interrupted run (Ctrl-C, a timeout) leaves the checkout as it was.

Usage::

    python tools/mutation_test.py            # run every mutation (about 7 minutes on 2 cores)
    python tools/mutation_test.py --list     # the mutations and their tests
    python tools/mutation_test.py --only rng_restore --only sampler_position
    python tools/mutation_test.py --check    # every snippet still exists, once (fast, for CI)

Exit status: 0 every mutation caught (or, with ``--check``, every snippet found); 1 some
mutation survived; 2 an error (a snippet not found or found twice, the unmutated tests
failing, a test selection that collects nothing).
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

__all__ = ["Mutation", "MUTATIONS", "check_mutations", "run_mutation", "main"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Not needed to run the tests, and large or changing while we copy.
_CACHES = shutil.ignore_patterns(
    ".git", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)


def _ignored(directory: str, names: List[str]) -> Set[str]:
    """What the copy leaves out: caches anywhere, and training runs (``./output*``) at the top."""
    ignored = set(_CACHES(directory, names))
    if os.path.abspath(directory) == REPO:
        ignored |= {n for n in names if n.startswith("output")}
    return ignored


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One change to one file, and the tests that must fail because of it.

    Attributes:
        name (str): a short identifier (``--only NAME``).
        path (str): the file, relative to the repository root.
        original (str): an exact snippet of the file; it must occur exactly once.
        replacement (str): what replaces it.
        tests (tuple[str, ...]): pytest arguments (files, node ids, ``-k`` expressions).
        why (str): the mistake it stands for.
    """

    name: str
    path: str
    original: str
    replacement: str
    tests: Tuple[str, ...]
    why: str


def _m(name, path, original, replacement, tests, why):
    return Mutation(name, path, original, replacement, tuple(tests), why)


_CKPT_TESTS = "tests/checkpoint/test_checkpointer.py"
_RESUME = "tests/engine/test_exact_resume_in_process.py"
_LOOP = "tests/engine/test_train_loop.py"

MUTATIONS: List[Mutation] = [
    # --- atomic writes -----------------------------------------------------------------
    _m(
        "atomic_write_in_place",
        "engine_lib/utils/file_io.py",
        "    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)",
        "    tmp_path = os.path.abspath(path)\n"
        "    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)",
        [
            "tests/utils/test_file_io.py",
            f"{_CKPT_TESTS}::test_crash_while_writing_keeps_previous_checkpoint",
        ],
        "atomic_write writes the target itself instead of a temporary file",
    ),
    _m(
        "atomic_write_no_fsync",
        "engine_lib/utils/file_io.py",
        "            f.flush()\n            os.fsync(f.fileno())\n",
        "            f.flush()\n",
        ["tests/utils/test_file_io.py"],
        "the data is not synced before the rename (an empty file after a power cut)",
    ),
    _m(
        "atomic_write_fsync_after_rename",
        "engine_lib/utils/file_io.py",
        "            os.fsync(f.fileno())\n        os.replace(tmp_path, path)\n",
        "            os.replace(tmp_path, path)\n            os.fsync(f.fileno())\n",
        ["tests/utils/test_file_io.py"],
        "fsync after the rename: the rename can reach the disk before the data",
    ),
    _m(
        "atomic_write_no_directory_fsync",
        "engine_lib/utils/file_io.py",
        "        raise\n    _fsync_directory(directory)\n",
        "        raise\n",
        ["tests/utils/test_file_io.py"],
        "the rename itself is never made durable",
    ),
    _m(
        "checkpoint_written_in_place",
        "engine_lib/checkpoint/checkpointer.py",
        "        return atomic_write(path, mode)",
        "        return open(path, mode)",
        [f"{_CKPT_TESTS}::test_crash_while_writing_keeps_previous_checkpoint"],
        "Checkpointer.save writes the .pth in place",
    ),
    _m(
        "last_checkpoint_not_tagged",
        "engine_lib/checkpoint/checkpointer.py",
        "            ) from e\n        self.tag_last_checkpoint(basename)\n",
        "            ) from e\n",
        [_CKPT_TESTS],
        "last_checkpoint is not updated after a save",
    ),
    _m(
        "predictions_plain_open",
        "engine_lib/evaluation/classification.py",
        'with atomic_write(os.path.join(self._output_dir, file_name), "w") as f:',
        'with open(os.path.join(self._output_dir, file_name), "w") as f:',
        ["tests/evaluation/test_classification.py -k crash_while_writing"],
        "the predictions JSON is written with a plain open",
    ),
    # --- exact resume ------------------------------------------------------------------
    _m(
        "rng_restore",
        "engine_lib/engine/trainer.py",
        "            restore_rng_state(rng[rank])",
        "            pass",
        [f"{_RESUME}::test_resume_repeats_the_run_with_dropout_sampler_position_and_ema"],
        "a resume does not restore the global RNG states (dropout, augmentation)",
    ),
    _m(
        "sampler_position",
        "engine_lib/engine/trainer.py",
        "            sampler.set_position(self.samples_consumed)",
        "            sampler.set_position(0)",
        [f"{_RESUME}::test_resume_repeats_the_run_with_dropout_sampler_position_and_ema"],
        "a resume starts the sample stream from its beginning",
    ),
    _m(
        "sampler_load_position",
        "engine_lib/data/samplers/base.py",
        "            self._epoch_starts = [0]\n        self.set_position(position)",
        "            self._epoch_starts = [0]\n        self.set_position(0)",
        ["tests/data/test_samplers.py", _RESUME],
        "the sampler's load_state_dict forgets the position",
    ),
    _m(
        "samples_consumed_restore",
        "engine_lib/engine/train_loop/simple_trainer.py",
        '        self.samples_consumed = int(state.get("samples_consumed", 0))',
        "        self.samples_consumed = 0",
        [f"{_LOOP}::test_state_dict_round_trip"],
        "SimpleTrainer does not restore its count of consumed samples",
    ),
    _m(
        "ema_state_restore",
        "engine_lib/engine/hooks/ema.py",
        '        self.num_updates = int(state["num_updates"])',
        "        self.num_updates = 0",
        [
            "tests/engine/test_hooks_stateful.py -k ema",
            "tests/engine/test_default_trainer.py::test_train_then_resume_from_state",
        ],
        "the EMA hook forgets its update count on resume",
    ),
    # --- EMA ---------------------------------------------------------------------------
    _m(
        "ema_eval_off",
        "engine_lib/engine/default_hooks.py",
        "        eval_ema = ema if cfg.MODEL.EMA.EVAL_WITH_EMA else None",
        "        eval_ema = None",
        [f"{_RESUME}::test_eval_with_ema_evaluates_the_averaged_weights"],
        "MODEL.EMA.EVAL_WITH_EMA is ignored",
    ),
    _m(
        "ema_decay_swapped",
        "engine_lib/engine/hooks/ema.py",
        "torch._foreach_lerp_(average, current, 1.0 - self._decay)",
        "torch._foreach_lerp_(average, current, self._decay)",
        ["tests/engine/test_hooks_stateful.py -k ema"],
        "the EMA weights the new value by the decay instead of 1 - decay",
    ),
    # --- non-finite checks -------------------------------------------------------------
    _m(
        "nonfinite_loss_isnan",
        "engine_lib/engine/train_loop/device_metrics.py",
        "    if all(map(math.isfinite, totals)):",
        "    if not any(map(math.isnan, totals)):",
        [f"{_LOOP}::test_infinite_loss_raises_like_nan"],
        "only NaN losses are caught, +inf passes",
    ),
    _m(
        "nonfinite_weights_isnan",
        "engine_lib/engine/hooks/_checks.py",
        "torch.isfinite(p).all().to(device)",
        "(~torch.isnan(p)).all().to(device)",
        [f"{_LOOP}::test_nonfinite_weights_are_not_saved"],
        "an infinite weight is saved in a checkpoint",
    ),
    # --- weights_only loads ------------------------------------------------------------
    _m(
        "checkpoint_weights_only",
        "engine_lib/checkpoint/serialization.py",
        'torch.load(path, map_location="cpu", weights_only=not allow_pickle)',
        'torch.load(path, map_location="cpu", weights_only=False)',
        [f"{_CKPT_TESTS}::test_pickled_objects_are_refused_unless_allowed"],
        "checkpoints are unpickled (arbitrary code) without MODEL.WEIGHTS_ALLOW_PICKLE",
    ),
    _m(
        "checkpoint_save_check",
        "engine_lib/checkpoint/checkpointer.py",
        '            check_weights_only(data, name=f"Checkpoint {name!r}")',
        "            pass",
        [f"{_CKPT_TESTS}::test_save_refuses_state_that_weights_only_cannot_load"],
        "a checkpoint that weights_only cannot load back is written",
    ),
    _m(
        "pretrain_weights_only",
        "engine_lib/modeling/backbone/pretrain.py",
        'loaded: Any = torch.load(f, map_location="cpu", weights_only=True)',
        'loaded: Any = torch.load(f, map_location="cpu", weights_only=False)',
        ["tests/modeling/test_pretrain.py -k pickle"],
        "MODEL.BACKBONE.PRETRAIN_PATH is unpickled (arbitrary code)",
    ),
    # --- losses, gradients, means over ranks -------------------------------------------
    _m(
        "loss_sum_first_only",
        "engine_lib/engine/train_loop/simple_trainer.py",
        "            losses = losses + loss_dict[name]",
        "            losses = losses",
        [f"{_LOOP}::test_the_step_back_propagates_the_sum_of_all_losses"],
        "only the first of several losses is back-propagated",
    ),
    _m(
        "grad_accum_no_division",
        "engine_lib/engine/train_loop/simple_trainer.py",
        "            losses = losses / self.grad_accum_steps",
        "            losses = losses",
        [f"{_LOOP}::test_grad_accumulation_matches_one_large_batch"],
        "accumulated gradients are a sum over micro-batches, not their mean",
    ),
    _m(
        "reduce_dict_sum",
        "engine_lib/utils/comm.py",
        "        if average:\n            values /= world_size",
        "        if average:\n            pass",
        ["tests/utils/test_comm_distributed.py -k reduce_dict"],
        "comm.reduce_dict sums over ranks instead of averaging",
    ),
    _m(
        "gathered_losses_sum_over_ranks",
        "engine_lib/engine/train_loop/device_metrics.py",
        "    return stacked[:, :n].mean(dim=0), stacked[:, n:].amax(dim=0)",
        "    return stacked[:, :n].sum(dim=0), stacked[:, n:].amax(dim=0)",
        [f"{_LOOP}::test_distributed_gather_averages_and_raises_on_every_rank"],
        "the logged losses are summed over ranks, not averaged",
    ),
    _m(
        "ddp_find_unused_not_automatic",
        "engine_lib/engine/parallel.py",
        "            or (bool(cfg.MODEL.FREEZE_LAYERS) and cfg.MODEL.FREEZE_ITERS > 0),",
        "            or False,",
        ["tests/engine/test_ddp.py"],
        "frozen layers without find_unused_parameters: DDP fails at the second step",
    ),
    _m(
        "ddp_fp16_compression_ignored",
        "engine_lib/engine/parallel.py",
        "            fp16_compression=cfg.MODEL.DDP.FP16_COMPRESSION,",
        "            fp16_compression=False,",
        ["tests/engine/test_ddp.py"],
        "MODEL.DDP.FP16_COMPRESSION is ignored",
    ),
    _m(
        "grad_clip_from_config_ignored",
        "engine_lib/engine/train_loop/grad_clip.py",
        "            nn.utils.clip_grad_norm_(parameters, self.clip_value, self.norm_type)",
        "            pass",
        ["tests/engine/test_default_trainer_config_paths.py -k clip"],
        "SOLVER.CLIP_GRADIENTS with CLIP_TYPE norm clips nothing",
    ),
    _m(
        "d2_gradient_clipping_ignored",
        "engine_lib/solver/gradient_clipping.py",
        "                    torch.nn.utils.clip_grad_norm_(param, value, norm_type)",
        "                    pass",
        ["tests/solver/test_detectron2_api.py -k gradient_clipping"],
        "detectron2's maybe_add_gradient_clipping clips nothing",
    ),
    # --- LR schedule, metric gathering -------------------------------------------------
    _m(
        "warmup_linear_factor",
        "engine_lib/solver/lr_scheduler.py",
        "        return warmup_factor * (1.0 - alpha) + alpha",
        "        return warmup_factor * (1.0 - alpha)",
        ["tests/solver/test_lr_scheduler.py", "tests/solver/test_detectron2_api.py"],
        "the linear warmup ramps towards 0 instead of 1",
    ),
    _m(
        "warmup_constant_factor",
        "engine_lib/solver/lr_scheduler.py",
        '    if method == "constant":\n        return warmup_factor',
        '    if method == "constant":\n        return 1.0',
        ["tests/solver/test_detectron2_api.py"],
        "the constant warmup of the detectron2 schedulers does not lower the LR",
    ),
    _m(
        "warmup_constant_start",
        "engine_lib/solver/lr_scheduler.py",
        "            warmup = ConstantParamScheduler(start_value)",
        "            warmup = ConstantParamScheduler(end_value)",
        ["tests/solver/test_lr_scheduler.py"],
        "SOLVER.WARMUP_METHOD constant does not lower the LR",
    ),
    _m(
        "gather_period",
        "engine_lib/engine/train_loop/simple_trainer.py",
        "        if every_n_iters_or_last(self.iter, period, self.max_iter):",
        "        if every_n_iters_or_last(self.iter, 1, self.max_iter):",
        [_LOOP, "tests/parity/test_engine_parity.py -k gather"],
        "losses are copied to the host at every iteration (a sync per step)",
    ),
    # --- hooks from the config ---------------------------------------------------------
    _m(
        "best_checkpoint_mode",
        "engine_lib/engine/hooks/best_checkpointer.py",
        'self._better = operator.gt if mode == "max" else operator.lt',
        "self._better = operator.gt",
        ["tests/engine/test_default_trainer_config_paths.py -k best_checkpoint"],
        "BEST_CHECKPOINT.MODE min keeps the largest value",
    ),
    _m(
        "preempt_signal_ignored",
        "engine_lib/engine/hooks/preemption.py",
        "        if comm.get_world_size() == 1:\n            return self._received is not None",
        "        if comm.get_world_size() == 1:\n            return False",
        ["tests/engine/test_default_trainer_config_paths.py -k preempt"],
        "a preemption signal is recorded but never stops the run",
    ),
    _m(
        "precise_bn_off",
        "engine_lib/engine/default_hooks.py",
        "        if not (cfg.TEST.PRECISE_BN.ENABLED and _has_batchnorm(model)):",
        "        if True:",
        ["tests/engine/test_default_trainer_config_paths.py -k precise_bn"],
        "TEST.PRECISE_BN.ENABLED builds no hook",
    ),
    # --- what the docs promise (issue 19, part 0) and the resume comparator (part 3) ----
    _m(
        "resume_compare_nan_to_num",
        "tools/resume_judge.py",
        "    return tensor.contiguous().view(_INT_OF_SIZE[tensor.element_size()])",
        "    return tensor.nan_to_num()",
        ["tests/tools/test_resume_check_compare.py"],
        "resume_check calls NaN equal to 0.0 and +inf equal to the largest float",
    ),
    _m(
        "expected_results_ignored",
        "engine_lib/engine/trainer.py",
        "            check_results(self.cfg, self.last_eval_results)",
        "            pass",
        ["tests/engine/test_default_trainer.py -k missed_expected_result"],
        "a missed TEST.EXPECTED_RESULTS only logs, the run succeeds",
    ),
    _m(
        "job_seed_redrawn",
        "engine_lib/config/resolve.py",
        "        resolved.SEED = job_seed(resolved)",
        "        resolved.SEED = draw_seed() if resolved.SEED < 0 else resolved.SEED",
        ["tests/engine/test_default_trainer.py -k seed_minus_one_replays"],
        "the trainer draws another seed than default_setup: config.yaml does not replay the run",
    ),
    _m(
        "pending_metrics_not_written_before_save",
        "engine_lib/engine/hooks/_checks.py",
        "        if isinstance(hook, PeriodicWriter) and hook.write_before_save:",
        "        if False:",
        [
            "tests/engine/test_hooks_checkpoint.py -k pending_metrics",
            "tests/tools/test_resume_check_epochs.py",
        ],
        "an evaluation line is lost when a run is killed after a checkpoint (periods in epochs)",
    ),
]


def _read(root: str, mutation: Mutation) -> str:
    with open(os.path.join(root, mutation.path), encoding="utf-8") as f:
        return f.read()


def check_mutations(mutations: Sequence[Mutation], root: str = REPO) -> List[str]:
    """Return one problem line per mutation whose snippet is missing or not unique.

    Args:
        mutations (list[Mutation]): the mutations to check.
        root (str): the repository root. Default: this checkout.

    Returns:
        list[str]: empty when every snippet occurs exactly once in its file.
    """
    problems = []
    names = [m.name for m in mutations]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{name}: the name is used by more than one mutation")
    for m in mutations:
        try:
            count = _read(root, m).count(m.original)
        except OSError as e:
            problems.append(f"{m.name}: cannot read {m.path}: {e}")
            continue
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            problems.append(f"{m.name}: the original snippet is {where} in {m.path}")
        if m.original == m.replacement:
            problems.append(f"{m.name}: the replacement is the original")
    return problems


def _runs(tests: Sequence[str]) -> List[List[str]]:
    """Group test selections into pytest runs: a ``-k`` applies to a whole run, so each
    selection with one runs alone; files and node ids share one run (one start-up)."""
    plain = [t for t in tests if " -k " not in t]
    return ([plain] if plain else []) + [[t] for t in tests if " -k " in t]


def _pytest(root: str, tests: Sequence[str], timeout: float) -> Tuple[str, float]:
    """Run the tests in ``root``; return ``("pass" | "fail" | "timeout" | "error:<rc>", s)``.

    ``tests`` must not mix a ``-k`` selection with others (see :func:`_runs`).
    """
    args = [a for t in tests for a in t.split()]
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    env = dict(os.environ, PYTHONPATH=root, PYTHONDONTWRITEBYTECODE="1")
    start = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=root, env=env, timeout=timeout, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    seconds = time.monotonic() - start
    # 1: tests failed; 2: collection failed (e.g. the mutation broke an import). 5: nothing
    # collected, 3 and 4: pytest itself failed; none of those says anything about the tests.
    if done.returncode == 0:
        return "pass", seconds
    if done.returncode in (1, 2):
        return "fail", seconds
    return f"error:{done.returncode}", seconds


def run_mutation(root: str, mutation: Mutation, timeout: float) -> Tuple[str, float]:
    """Apply ``mutation`` in the copy at ``root``, run its tests, and undo it.

    Returns:
        tuple[str, float]: ``"caught"``, ``"survived"`` or ``"error: ..."``, and the seconds.
    """
    path = os.path.join(root, mutation.path)
    original = _read(root, mutation)
    if original.count(mutation.original) != 1:
        return "error: snippet not found once", 0.0
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(mutation.original, mutation.replacement))
        outcome, seconds = "pass", 0.0
        for tests in _runs(mutation.tests):
            outcome, more = _pytest(root, tests, timeout)
            seconds += more
            if outcome != "pass":
                break
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    if outcome == "pass":
        return "survived", seconds
    if outcome in ("fail", "timeout"):
        return "caught" + (" (timeout)" if outcome == "timeout" else ""), seconds
    return f"error: pytest {outcome}", seconds


def _select(names: Optional[Sequence[str]]) -> Optional[List[Mutation]]:
    """The mutations named by ``--only`` (all without it); None if a name is unknown."""
    if not names:
        return list(MUTATIONS)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"ERROR unknown mutation(s) {unknown}; see --list.", file=sys.stderr)
        return None
    return [known[n] for n in names]


def _print_table(rows: List[Tuple[str, str, float]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'mutation'.ljust(width)}  {'result':<18} seconds")
    for name, result, seconds in rows:
        print(f"{name.ljust(width)}  {result:<18} {seconds:7.1f}")
    counts: Dict[str, int] = {}
    for _, result, _ in rows:
        key = result.split()[0].rstrip(":")
        counts[key] = counts.get(key, 0) + 1
    print(
        f"\n{counts.get('caught', 0)} caught, {counts.get('survived', 0)} survived, "
        f"{counts.get('error', 0)} errors, of {len(rows)} mutations."
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status (0 all caught, 1 survived, 2 error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--check", action="store_true", help="check every snippet exists once")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only NAME (repeat)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per test run (default 300)"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip running the selected tests unmutated first (they must pass)",
    )
    args = parser.parse_args(argv)
    mutations = _select(args.only)
    if mutations is None:
        return 2

    if args.list:
        for m in mutations:
            print(f"{m.name}: {m.path}: {m.why}\n    tests: {' '.join(m.tests)}")
        return 0
    problems = check_mutations(mutations)
    for line in problems:
        print(f"ERROR {line}", file=sys.stderr)
    if args.check or problems:
        if not problems:
            print(f"All {len(mutations)} mutation snippets found, each once.")
        return 2 if problems else 0

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation_test_") as tmp:
        root = os.path.join(tmp, "repo")
        shutil.copytree(REPO, root, ignore=_ignored)
        if not args.no_baseline:
            # A failing test would "catch" every mutation: the unmutated code must pass.
            selection = list(dict.fromkeys(t for m in mutations for t in m.tests))
            print(f"Baseline: the {len(selection)} test selections without mutation ...")
            for tests in _runs(selection):
                outcome, seconds = _pytest(root, tests, args.timeout * len(tests))
                if outcome != "pass":
                    print(f"ERROR baseline {outcome} ({seconds:.0f} s): {tests}", file=sys.stderr)
                    return 2
            print(f"Baseline passed in {time.monotonic() - start:.0f} s.")
        rows = []
        for m in mutations:
            result, seconds = run_mutation(root, m, args.timeout)
            print(f"{m.name}: {result} ({seconds:.1f} s)", flush=True)
            rows.append((m.name, result, seconds))
    _print_table(rows)
    print(f"Total time: {time.monotonic() - start:.0f} s")
    if any(r.startswith("error") for _, r, _ in rows):
        return 2
    return 1 if any(r == "survived" for _, r, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
