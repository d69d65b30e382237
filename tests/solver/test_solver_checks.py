"""Start-up warnings about solver settings a new user gets wrong (issue 16, item 4)."""

from engine_lib.config import get_cfg
from engine_lib.solver.checks import check_solver_settings


def solver_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.MAX_ITER", "600", "SOLVER.WARMUP_ITERS", "50", *opts])
    return cfg


def test_defaults_warn_about_nothing():
    assert check_solver_settings(solver_cfg()) == []
    assert check_solver_settings(solver_cfg("SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR")) == []


def test_steps_under_cosine_names_both_keys():
    cfg = solver_cfg("SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.STEPS", "(400, 500)")
    (message,) = check_solver_settings(cfg)
    assert message.startswith("SOLVER.STEPS=(400, 500) has no effect under ")
    assert "SOLVER.LR_SCHEDULER_NAME='WarmupCosineLR'" in message


def test_every_key_the_schedule_does_not_read():
    cfg = solver_cfg("SOLVER.BASE_LR_END", "0.1", "SOLVER.NUM_DECAYS", "5")  # multi-step
    messages = check_solver_settings(cfg)
    assert [m.split("=")[0] for m in messages] == ["SOLVER.BASE_LR_END", "SOLVER.NUM_DECAYS"]
    cfg = solver_cfg("SOLVER.LR_SCHEDULER_NAME", "WarmupConstantLR", "SOLVER.GAMMA", "0.5")
    assert "it reads none of them" in check_solver_settings(cfg)[0]


def test_max_iter_within_warmup():
    (message,) = check_solver_settings(solver_cfg("SOLVER.MAX_ITER", "40"))
    assert "SOLVER.MAX_ITER=40 is at or below SOLVER.WARMUP_ITERS=50" in message
    assert (
        check_solver_settings(solver_cfg("SOLVER.MAX_ITER", "40", "SOLVER.WARMUP_ITERS", "0")) == []
    )


def test_fp16_autocast_on_cpu_suggests_bf16():
    (message,) = check_solver_settings(solver_cfg("SOLVER.AMP.ENABLED", "True"))
    assert "SOLVER.AMP.DTYPE='float16' on MODEL.DEVICE='cpu'" in message and "bfloat16" in message
    cfg = solver_cfg("SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", "bfloat16")
    assert check_solver_settings(cfg) == []
