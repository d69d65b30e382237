"""Epochs as a unit: parsing "Nep" periods, MAX_ITER vs MAX_EPOCH, conversion to iterations."""

import pytest

from engine_lib.config import get_cfg, resolve_config
from engine_lib.config.epochs import compute_iters_per_epoch, parse_period, resolve_epochs
from engine_lib.engine import DefaultTrainer
from engine_lib.utils.errors import ConfigError


def _epoch_cfg(**solver):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.MAX_EPOCH", "3"])
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


@pytest.mark.parametrize(
    "value, expected",
    [(500, (500, False)), ("5ep", (5.0, True)), ("2.5ep", (2.5, True)), (" 1 ep", (1.0, True))],
)
def test_parse_period_accepts_iterations_and_epochs(value, expected):
    assert parse_period(value, "TEST.EVAL_PERIOD") == expected


@pytest.mark.parametrize("value", ["5epochs", "abc", "-1ep", "ep", 2.5, True])
def test_parse_period_rejects_other_forms_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"TEST\.EVAL_PERIOD.*'5ep' or '2\.5ep'"):
        parse_period(value, "TEST.EVAL_PERIOD")


@pytest.mark.parametrize(
    "key", ["SOLVER.CHECKPOINT_PERIOD", "TEST.EVAL_PERIOD", "SOLVER.WARMUP_ITERS"]
)
def test_period_keys_take_epochs_and_back_to_iterations(key):
    cfg = get_cfg()
    cfg.merge_from_list([key, "2ep"])
    group, leaf = key.split(".")
    assert cfg[group][leaf] == "2ep"
    cfg.merge_from_list([key, "7"])  # back to an int: the previous string is no type constraint
    assert cfg[group][leaf] == 7


def test_bad_period_from_a_file_names_key_file_and_forms(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  CHECKPOINT_PERIOD: 5epochs\n")
    with pytest.raises(ConfigError, match=r"SOLVER\.CHECKPOINT_PERIOD.*5epochs.*'5ep'.*bad\.yaml"):
        get_cfg().merge_from_file(str(path))


def test_steps_mix_iterations_and_epochs_and_reject_bad_entries():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.STEPS", "('2ep', 300)"])
    assert cfg.SOLVER.STEPS == ("2ep", 300)
    with pytest.raises(ConfigError, match=r"SOLVER\.STEPS.*'abc'"):
        cfg.merge_from_list(["SOLVER.STEPS", "('abc',)"])


def test_later_source_switches_between_iterations_and_epochs(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  MAX_ITER: 600\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  MAX_EPOCH: 4\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_EPOCH) == (-1, 4)
    cfg.merge_from_list(["SOLVER.MAX_ITER", "50"])
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_EPOCH) == (50, 0)
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_EPOCH) == (-1, 4)


def test_both_in_one_source_is_an_error_naming_both_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"SOLVER\.MAX_ITER=5 and SOLVER\.MAX_EPOCH=2.*command"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "5", "SOLVER.MAX_EPOCH", "2"])
    path = tmp_path / "both.yaml"
    path.write_text("SOLVER:\n  MAX_ITER: 5\n  MAX_EPOCH: 2\n")
    with pytest.raises(ConfigError, match=r"MAX_ITER.*MAX_EPOCH.*both\.yaml"):
        get_cfg().merge_from_file(str(path))


def test_resolve_rejects_both_and_neither():
    cfg = get_cfg()
    with pytest.raises(ConfigError, match=r"MAX_ITER.*MAX_EPOCH.*neither"):
        resolve_epochs(cfg, 10)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_EPOCH = 100, 2  # set in code, past the merge checks
    with pytest.raises(ConfigError, match=r"MAX_ITER.*MAX_EPOCH.*both"):
        resolve_epochs(cfg, 10)


@pytest.mark.parametrize(
    "drop_last, accum, expected", [(True, 1, 8), (False, 1, 9), (True, 2, 4), (False, 2, 5)]
)
def test_iters_per_epoch_rounding(drop_last, accum, expected):
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.GRAD_ACCUM_STEPS = 16, accum
    cfg.DATALOADER.DROP_LAST = drop_last
    assert compute_iters_per_epoch(cfg, 140) == expected  # 140 / 16 = 8.75; / 32 = 4.375
    assert compute_iters_per_epoch(cfg, 3) == 1  # a set smaller than a batch: one iteration
    assert compute_iters_per_epoch(cfg, None) == 0
    cfg.SOLVER.ITERS_PER_EPOCH = 11
    assert compute_iters_per_epoch(cfg, 140) == 11


def test_resolve_converts_length_and_every_period(tmp_path):
    cfg = _epoch_cfg(
        CHECKPOINT_PERIOD="1ep", WARMUP_ITERS="0.5ep", STEPS=("2ep", 25), DELAY_EPOCHS=1
    )
    cfg.TEST.EVAL_PERIOD = "0.01ep"
    cfg.freeze()
    resolved = resolve_epochs(cfg, 10)
    assert resolved.is_frozen() and cfg.SOLVER.MAX_ITER == -1  # the input is untouched
    solver = resolved.SOLVER
    assert (solver.MAX_ITER, solver.MAX_EPOCH, solver.ITERS_PER_EPOCH) == (30, 0, 10)
    assert (solver.CHECKPOINT_PERIOD, solver.WARMUP_ITERS, solver.STEPS) == (10, 5, (20, 25))
    assert resolved.TEST.EVAL_PERIOD == 1  # a tiny non-zero period never becomes "never"
    # The resolved config, dumped (e.g. trainer.cfg) and merged again, is a valid config.
    dumped = tmp_path / "resolved.yaml"
    dumped.write_text(resolved.dump())
    again = get_cfg()
    again.merge_from_file(str(dumped))
    assert (again.SOLVER.MAX_ITER, again.SOLVER.MAX_EPOCH) == (30, 0)


def test_resolve_needs_iters_per_epoch_only_when_epochs_are_used():
    cfg = _epoch_cfg()
    with pytest.raises(ConfigError, match=r"SOLVER\.MAX_EPOCH.*ITERS_PER_EPOCH"):
        resolve_epochs(cfg, 0)
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 40
    assert resolve_epochs(cfg, 0).SOLVER.MAX_ITER == 40
    cfg.TEST.EVAL_PERIOD = "1ep"
    with pytest.raises(ConfigError, match=r"TEST\.EVAL_PERIOD"):
        resolve_epochs(cfg, 0)


def test_auto_scale_leaves_epoch_values_alone():
    cfg = _epoch_cfg(REFERENCE_WORLD_SIZE=1, IMS_PER_BATCH=16, STEPS=("2ep", 300))
    cfg.SOLVER.CHECKPOINT_PERIOD = "1ep"
    cfg.TEST.EVAL_PERIOD = 100
    scaled = DefaultTrainer.auto_scale_workers(cfg, 2)
    solver = scaled.SOLVER
    assert (solver.IMS_PER_BATCH, solver.MAX_EPOCH, solver.MAX_ITER) == (32, 3, -1)
    assert (solver.STEPS, solver.CHECKPOINT_PERIOD, scaled.TEST.EVAL_PERIOD) == (
        ("2ep", 150),
        "1ep",
        50,
    )
    # The epoch-valued periods follow the doubled batch through iters_per_epoch instead.
    per_epoch = compute_iters_per_epoch(scaled, 320)
    assert per_epoch == 10 and resolve_epochs(scaled, per_epoch).SOLVER.STEPS == (20, 150)


def test_resolve_config_settles_seed_world_size_and_epochs_in_one_step():
    cfg = _epoch_cfg(REFERENCE_WORLD_SIZE=1, IMS_PER_BATCH=16, STEPS=("2ep", 300))
    cfg.SEED = -1
    cfg.freeze()
    seen = []

    def epoch_size(partial):
        # Called once, with what a loader reads already final: the seed and the batch.
        seen.append((partial.is_frozen(), partial.SEED >= 0, partial.SOLVER.IMS_PER_BATCH))
        return 320

    resolved = resolve_config(cfg, world_size=2, epoch_size=epoch_size)
    assert seen == [(True, True, 32)]
    solver = resolved.SOLVER
    assert resolved.is_frozen() and resolved.SEED >= 0 and cfg.SEED == -1
    assert (solver.IMS_PER_BATCH, solver.ITERS_PER_EPOCH, solver.MAX_ITER) == (32, 10, 30)
    assert solver.STEPS == (20, 150) and solver.REFERENCE_WORLD_SIZE == 2
    # Resolving the resolved config changes nothing (nothing left to decide).
    assert resolve_config(resolved, world_size=2, epoch_size=lambda _: 320) == resolved
