"""A training script written against detectron2's API; only the imports name engine_lib.

Replace ``engine_lib`` by ``detectron2`` in the imports below and it runs on detectron2:
yacs config + ``@configurable`` model, ``build_optimizer`` / ``build_lr_scheduler``,
``SimpleTrainer`` with detectron2's hooks and writers, a model that puts its own metric into
the ``EventStorage``, ``DetectionCheckpointer`` with periodic saves, and a resume the way
detectron2's ``plain_train_net.py`` does it. It prints a JSON summary on its last line.

Usage::

    python tests/parity/d2_style_script.py OUTPUT_DIR MAX_ITER [--resume]
"""

import json
import logging
import os
import sys

import torch
from torch import nn

from engine_lib.checkpoint import DetectionCheckpointer
from engine_lib.config import configurable, get_cfg
from engine_lib.engine import SimpleTrainer, hooks
from engine_lib.solver import build_lr_scheduler, build_optimizer
from engine_lib.utils.events import CommonMetricPrinter, JSONWriter, get_event_storage
from engine_lib.utils.logger import setup_logger

logger = logging.getLogger("d2_style_script")


class Regressor(nn.Module):
    @configurable
    def __init__(self, in_dim, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    @classmethod
    def from_config(cls, cfg):
        return {"in_dim": 8, "hidden": cfg.MODEL.HEADS.NUM_CLASSES}

    def forward(self, batch):
        if not self.training:
            return self.net(batch).squeeze(1)
        x, y = batch
        pred = self.net(x).squeeze(1)
        storage = get_event_storage()
        storage.put_scalar("[metric]weight_norm", self.net[0].weight.norm().item())
        return {"loss_mse": ((pred - y) ** 2).mean(), "loss_l1": (pred - y).abs().mean()}


def data_loader():
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randn(16, 8, generator=g)
        yield x, x.sum(dim=1)


def evaluate(model):
    model.eval()
    with torch.no_grad():
        x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
        mse = ((model(x) - x.sum(dim=1)) ** 2).mean().item()
    model.train()
    return {"val": {"mse": mse}}


def main(output_dir, max_iter, resume):
    setup_logger(output_dir)
    cfg = get_cfg()
    cfg.MODEL.HEADS.NUM_CLASSES = 16
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = (30,)
    cfg.SOLVER.WARMUP_ITERS = 5

    model = Regressor(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    trainer = SimpleTrainer(model, data_loader(), optimizer, gather_metric_period=10)
    checkpointer = DetectionCheckpointer(
        model, output_dir, optimizer=optimizer, scheduler=scheduler, trainer=trainer
    )
    writers = [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
    ]
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(optimizer, scheduler),
            hooks.PeriodicCheckpointer(checkpointer, 15),
            hooks.EvalHook(20, lambda: evaluate(model)),
            hooks.PeriodicWriter(writers, period=10),
        ]
    )
    start_iter = 0
    if resume:
        start_iter = checkpointer.resume_or_load("", resume=True).get("iteration", -1) + 1
    trainer.train(start_iter, max_iter)

    storage = trainer.storage
    with open(os.path.join(output_dir, "metrics.json")) as f:
        json_iters = [json.loads(line)["iteration"] for line in f]
    summary = {
        "start_iter": start_iter,
        "history": {k: len(v.values()) for k, v in sorted(storage.histories().items())},
        "json_iterations": json_iters,
        "files": sorted(f for f in os.listdir(output_dir) if f.endswith(".pth")),
        "lr": optimizer.param_groups[0]["lr"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), "--resume" in sys.argv[3:])
