"""A tiny model, data and trainer builder shared by the train-loop and hook tests."""

import itertools
from typing import Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from engine_lib.engine.train_loop import HookBase, SimpleTrainer

__all__ = ["ToyRegressor", "make_samples", "batches", "make_trainer", "Recorder"]

DIM = 4


class ToyRegressor(nn.Module):
    """Linear regression on ``list[{"x": (DIM,), "y": ()}]``; returns ``{"loss": mse}``.

    With ``two_losses`` it also returns ``loss_l1``; with ``bn`` a BatchNorm precedes the
    linear layer.
    """

    def __init__(self, two_losses: bool = False, bn: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(DIM) if bn else None
        self.linear = nn.Linear(DIM, 1)
        self.two_losses = two_losses
        self.last_dtype: Optional[torch.dtype] = None

    def forward(self, batch: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batch])
        y = torch.stack([d["y"] for d in batch])
        if self.bn is not None:
            x = self.bn(x)
        pred = self.linear(x).squeeze(1)
        self.last_dtype = pred.dtype
        losses = {"loss": ((pred.float() - y) ** 2).mean()}
        if self.two_losses:
            losses["loss_l1"] = (pred.float() - y).abs().mean()
        return losses


def make_samples(n: int, seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """``n`` samples of a noisy linear function."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    y = x @ torch.arange(1.0, DIM + 1) + 0.1 * torch.randn(n, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def batches(
    batch_size: int, samples: Optional[Sequence[Dict]] = None, nan_at: Optional[int] = None
) -> Iterator[List[Dict[str, torch.Tensor]]]:
    """Batches cycling over ``samples`` forever; batch number ``nan_at`` gets a NaN target."""
    samples = list(samples) if samples is not None else make_samples(64)
    stream = itertools.cycle(samples)
    for index in itertools.count():
        batch = [dict(next(stream)) for _ in range(batch_size)]
        if index == nan_at:
            batch[0]["y"] = torch.tensor(float("nan"))
        yield batch


def make_trainer(
    model: Optional[nn.Module] = None,
    data=None,
    hooks: Sequence[Optional[HookBase]] = (),
    lr: float = 0.05,
    **kwargs,
) -> SimpleTrainer:
    """A SimpleTrainer of a ToyRegressor with SGD, an LR schedule and the given hooks."""
    model = model if model is not None else ToyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    trainer = SimpleTrainer(model, data if data is not None else batches(8), optimizer, **kwargs)
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    trainer.register_hooks(hooks)
    return trainer


class Recorder(HookBase):
    """Records every hook call as ``(event, iteration)``."""

    def __init__(self) -> None:
        self.events: List[tuple] = []

    def before_train(self) -> None:
        self.events.append(("before_train", self.trainer.iter))

    def after_train(self) -> None:
        self.events.append(("after_train", self.trainer.iter))

    def before_step(self) -> None:
        self.events.append(("before_step", self.trainer.iter))

    def after_backward(self) -> None:
        self.events.append(("after_backward", self.trainer.iter))

    def after_step(self) -> None:
        self.events.append(("after_step", self.trainer.iter))
