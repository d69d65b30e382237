"""detectron2's public names exist at the same paths, with detectron2's signatures and errors."""

import importlib
import inspect

import pytest

from engine_lib.config import configurable, get_cfg

# (module, names) as in detectron2, with "detectron2" replaced by "engine_lib".
PUBLIC = [
    (
        "engine_lib.engine",
        "SimpleTrainer AMPTrainer TrainerBase HookBase DefaultTrainer "
        "DefaultPredictor default_argument_parser default_setup default_writers launch "
        "create_ddp_model hooks",
    ),
    ("engine_lib.engine.train_loop", "HookBase TrainerBase SimpleTrainer AMPTrainer"),
    (
        "engine_lib.engine.hooks",
        "CallbackHook IterationTimer PeriodicWriter PeriodicCheckpointer "
        "BestCheckpointer LRScheduler AutogradProfiler EvalHook PreciseBN TorchProfiler "
        "TorchMemoryStats",
    ),
    (
        "engine_lib.utils.events",
        "EventStorage get_event_storage EventWriter JSONWriter "
        "TensorboardXWriter CommonMetricPrinter",
    ),
    ("engine_lib.checkpoint", "Checkpointer PeriodicCheckpointer DetectionCheckpointer"),
    ("engine_lib.checkpoint.detection_checkpoint", "DetectionCheckpointer"),
    (
        "engine_lib.solver",
        "build_optimizer build_lr_scheduler get_default_optimizer_params "
        "reduce_param_groups LRMultiplier WarmupParamScheduler WarmupMultiStepLR WarmupCosineLR",
    ),
    (
        "engine_lib.solver.build",
        "build_optimizer build_lr_scheduler get_default_optimizer_params "
        "reduce_param_groups maybe_add_gradient_clipping _expand_param_groups",
    ),
    (
        "engine_lib.solver.lr_scheduler",
        "LRMultiplier WarmupParamScheduler WarmupMultiStepLR WarmupCosineLR",
    ),
    ("engine_lib.config", "CfgNode get_cfg configurable"),
    (
        "engine_lib.utils.comm",
        "get_world_size get_rank get_local_rank get_local_size "
        "is_main_process synchronize all_gather gather reduce_dict shared_random_seed",
    ),
    (
        "engine_lib.utils.logger",
        "setup_logger log_first_n log_every_n log_every_n_seconds create_small_table",
    ),
    ("engine_lib.utils.env", "seed_all_rng"),
]


@pytest.mark.parametrize("module, names", PUBLIC)
def test_names_exist(module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names.split() if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


def _params(func):
    return list(inspect.signature(func).parameters)


def test_signatures_take_detectron2_arguments():
    from engine_lib.engine import AMPTrainer, SimpleTrainer, hooks
    from engine_lib.utils.events import CommonMetricPrinter, EventStorage, JSONWriter
    from engine_lib.utils.logger import setup_logger

    assert _params(SimpleTrainer)[:6] == [
        "model", "data_loader", "optimizer", "gather_metric_period",
        "zero_grad_before_forward", "async_write_metrics",
    ]  # fmt: skip
    assert _params(AMPTrainer)[:9] == [
        "model", "data_loader", "optimizer", "gather_metric_period",
        "zero_grad_before_forward", "grad_scaler", "precision", "log_grad_scaler",
        "async_write_metrics",
    ]  # fmt: skip
    assert _params(hooks.PeriodicCheckpointer)[:5] == [
        "checkpointer", "period", "max_iter", "max_to_keep", "file_prefix",
    ]  # fmt: skip
    assert _params(hooks.BestCheckpointer) == [
        "eval_period", "checkpointer", "val_metric", "mode", "file_prefix",
    ]  # fmt: skip
    assert _params(hooks.EvalHook) == ["eval_period", "eval_function", "eval_after_train"]
    assert _params(hooks.LRScheduler) == ["optimizer", "scheduler"]
    assert _params(hooks.PeriodicWriter)[:2] == ["writers", "period"]
    assert _params(hooks.IterationTimer) == ["warmup_iter"]
    assert _params(hooks.PreciseBN) == ["period", "model", "data_loader", "num_iter"]
    assert _params(hooks.TorchMemoryStats) == ["period", "max_runs"]
    assert _params(hooks.AutogradProfiler) == ["enable_predicate", "output_dir", "use_cuda"]
    assert _params(JSONWriter) == ["json_file", "window_size"]
    assert _params(CommonMetricPrinter)[:2] == ["max_iter", "window_size"]
    assert _params(EventStorage) == ["start_iter"]
    assert _params(EventStorage.put_scalar) == [
        "self", "name", "value", "smoothing_hint", "cur_iter",
    ]  # fmt: skip
    assert _params(setup_logger)[:7] == [
        "output", "distributed_rank", "color", "name", "abbrev_name", "enable_propagation",
        "configure_stdout",
    ]  # fmt: skip


def test_configurable_errors_for_bad_classes():
    class _BadClass1:
        @configurable
        def __init__(self, a=1, b=2):
            pass

    class _BadClass2:
        @configurable
        def __init__(self, a=1, b=2):
            pass

        def from_config(self, cfg):  # not a classmethod
            pass

    class _BadClass3:
        @configurable
        def __init__(self, a=1, b=2):
            pass

        @classmethod
        def from_config(cls, config):  # the first argument must be named cfg
            pass

    with pytest.raises(AttributeError):
        _BadClass1(get_cfg())
    with pytest.raises(TypeError):
        _BadClass2(get_cfg())
    with pytest.raises(TypeError):
        _BadClass3(get_cfg())


def test_configurable_forwards_extra_arguments_and_functions():
    class _A:
        @configurable
        def __init__(self, a, b=2, c=3):
            self.abc = (a, b, c)

        @classmethod
        def from_config(cls, cfg, b=20):
            return {"a": cfg.SOLVER.MAX_ITER, "b": b}

    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 7
    assert _A(cfg).abc == (7, 20, 3)
    assert _A(cfg, b=5, c=6).abc == (7, 5, 6)
    assert _A(cfg=cfg, c=9).abc == (7, 20, 9)
    assert _A(1, 2).abc == (1, 2, 3)

    @configurable(from_config=lambda cfg: {"x": cfg.SOLVER.MAX_ITER})
    def _f(x, y=1):
        return x + y

    assert _f(cfg) == 8 and _f(cfg, y=3) == 10 and _f(1, 1) == 2


def test_seed_all_rng_and_detection_checkpointer(tmp_path):
    import random

    import torch
    from torch import nn

    from engine_lib.checkpoint import Checkpointer, DetectionCheckpointer
    from engine_lib.utils.env import seed_all_rng

    seed_all_rng(3)
    a = (random.random(), torch.rand(1).item())
    seed_all_rng(3)
    assert (random.random(), torch.rand(1).item()) == a
    assert DetectionCheckpointer is Checkpointer
    model = nn.Linear(2, 2)
    checkpointer = DetectionCheckpointer(model, str(tmp_path), save_to_disk=True)
    checkpointer.save("model_final")
    assert DetectionCheckpointer(nn.Linear(2, 2)).load(str(tmp_path / "model_final.pth")) == {}
