"""Freeze chosen modules for the first iterations of training."""

import logging
from typing import Any, Dict, List, Sequence

from torch import nn

from engine_lib.utils.errors import ConfigError

from ..train_loop import HookBase

__all__ = ["LayerFreeze"]

logger = logging.getLogger(__name__)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


class LayerFreeze(HookBase):
    """Freeze the modules named ``module_names`` (and their children) for ``freeze_iters``.

    While frozen, their parameters have ``requires_grad=False`` (no gradient, so the optimizer
    leaves them, weight decay included) and their BatchNorm layers are in eval mode (running
    statistics fixed); the eval mode is set again before every step, since anything calling
    ``model.train()`` (e.g. after an evaluation) undoes it. Afterwards the parameters that were
    trainable become trainable again. The number of frozen iterations done is the hook's
    state, so a resumed run freezes only for the rest. With DDP, build the model with
    ``find_unused_parameters=True``: the set of parameters with gradients changes.

    Args:
        model (nn.Module): the model (a DDP wrapper is unwrapped).
        module_names (list[str]): qualified module names, e.g. ``["backbone.stem"]``; each
            matches that module and everything under it.
        freeze_iters (int): the number of iterations to keep them frozen.

    Raises:
        ConfigError: if a name matches no module.
    """

    def __init__(self, model: nn.Module, module_names: Sequence[str], freeze_iters: int) -> None:
        if isinstance(module_names, str):
            module_names = [module_names]
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        modules = dict(model.named_modules())
        unknown = [p for p in module_names if not any(_matches(n, p) for n in modules)]
        if unknown:
            raise ConfigError(
                f"LayerFreeze: no module named {unknown}; the model's top-level modules are "
                f"{[name for name, _ in model.named_children()]}"
            )
        frozen = [m for n, m in modules.items() if any(_matches(n, p) for p in module_names)]
        self._model = model
        self._params = list({id(p): p for m in frozen for p in m.parameters()}.values())
        self._norms = [m for m in frozen if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self._freeze_iters = freeze_iters
        self._names = list(module_names)
        self._thawed: List[nn.Parameter] = []
        self._frozen = False
        self.frozen_iters = 0

    def _freeze(self) -> None:
        self._thawed = [p for p in self._params if p.requires_grad]
        for p in self._thawed:
            p.requires_grad_(False)
        self._frozen = True
        logger.info(
            "LayerFreeze: froze %s (%d parameters) for %d more iterations.",
            self._names,
            len(self._thawed),
            self._freeze_iters - self.frozen_iters,
        )

    def _unfreeze(self) -> None:
        for p in self._thawed:
            p.requires_grad_(True)
        for m in self._norms:
            m.train(self._model.training)
        self._thawed = []
        self._frozen = False

    def before_train(self) -> None:
        if self.frozen_iters < self._freeze_iters:
            self._freeze()

    def before_step(self) -> None:
        if self._frozen:
            for m in self._norms:
                m.eval()

    def after_step(self) -> None:
        if self._frozen:
            self.frozen_iters += 1
            if self.frozen_iters >= self._freeze_iters:
                self._unfreeze()
                logger.info(
                    "LayerFreeze: unfroze %s at iteration %d.", self._names, self.trainer.iter
                )

    def after_train(self) -> None:
        # Give the model back as it was; the counter keeps the freeze going on a resume.
        if self._frozen:
            self._unfreeze()

    def state_dict(self) -> Dict[str, Any]:
        return {"frozen_iters": self.frozen_iters}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.frozen_iters = int(state["frozen_iters"])
