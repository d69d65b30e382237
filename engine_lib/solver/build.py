"""Build an optimizer from the config, with per-parameter weight decay and LR factors.

``get_default_optimizer_params`` turns a model into parameter groups (norm layers and
biases get their own weight decay, biases and chosen modules their own LR) and
``build_optimizer`` feeds them to the optimizer ``SOLVER.OPTIMIZER`` names in
``OPTIMIZER_REGISTRY`` (built in: SGD, Adam, AdamW, on torch's fastest update path).

As in detectron2, this module also offers ``build_lr_scheduler`` and
``maybe_add_gradient_clipping``.
"""

import logging
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from engine_lib.utils.errors import ConfigError

from .gradient_clipping import maybe_add_gradient_clipping
from .optimizers import OPTIMIZER_REGISTRY
from .schedules import build_lr_scheduler

__all__ = [
    "NORM_MODULE_TYPES",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "maybe_add_gradient_clipping",
    "reduce_param_groups",
]

logger = logging.getLogger(__name__)

# _NormBase covers BatchNorm*, SyncBatchNorm, InstanceNorm* and their lazy variants; the
# others have no common public base class. Projects with their own norm layers (e.g. a
# frozen BN) pass ``norm_module_types`` explicitly.
NORM_MODULE_TYPES: Tuple[type, ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,
        nn.GroupNorm,
        nn.LayerNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    )
    if t is not None
)


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer ``SOLVER.OPTIMIZER`` names in ``OPTIMIZER_REGISTRY`` for ``model``.

    Parameter groups come from :func:`get_default_optimizer_params` with the ``SOLVER.*``
    keys; the registered function turns them into the optimizer. The built-in ones use the
    fused kernels on CUDA, elsewhere the multi-tensor (foreach) kernels where the device has
    them. Gradient clipping is the trainer's (``SOLVER.CLIP_GRADIENTS``), not the
    optimizer's: see :func:`maybe_add_gradient_clipping` for detectron2's way.

    Args:
        cfg (CfgNode): the config; reads ``SOLVER.OPTIMIZER, BASE_LR, MOMENTUM, NESTEROV,
            BETAS, WEIGHT_DECAY, WEIGHT_DECAY_NORM, WEIGHT_DECAY_BIAS, BIAS_LR_FACTOR,
            LR_FACTORS``.
        model (nn.Module): the model whose trainable parameters are optimized (already on
            its device, so the fast path can be chosen).

    Returns:
        torch.optim.Optimizer: the optimizer.

    Raises:
        ConfigError: for an unknown ``SOLVER.OPTIMIZER`` (naming the closest registered
            ones), a malformed ``SOLVER.LR_FACTORS`` or inconsistent SGD momentum settings.
    """
    solver = cfg.SOLVER
    build = OPTIMIZER_REGISTRY.get_for_key("SOLVER.OPTIMIZER", solver.OPTIMIZER)
    params = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
        lr_factors=_lr_factors_from_cfg(solver.LR_FACTORS),
    )
    return build(cfg, params)


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: Optional[float] = None,
    weight_decay: Optional[float] = None,
    weight_decay_norm: Optional[float] = None,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: Optional[float] = None,
    lr_factor_func: Optional[Callable[[str], float]] = None,
    overrides: Optional[Mapping] = None,
    *,
    lr_factors: Optional[Mapping] = None,
    norm_module_types: Tuple[type, ...] = NORM_MODULE_TYPES,
) -> List[Dict[str, Any]]:
    """Split a model's trainable parameters into optimizer parameter groups.

    Each parameter appears once, even when modules share it. Its hyperparameters:

    * ``weight_decay``: ``weight_decay_norm`` for the weights and biases of norm layers,
      else ``weight_decay_bias`` for biases, else ``weight_decay``.
    * ``lr``: ``base_lr`` times ``bias_lr_factor`` for biases, times the factor of the
      longest prefix in ``lr_factors`` that matches the parameter's name, times
      ``lr_factor_func(name)``.
    * then ``overrides`` are applied on top.

    A key of ``lr_factors`` or ``overrides`` matches a parameter when it is the parameter's
    full name (``"head.linear.weight"``) or a module path it lies under (``"head"``,
    ``"head.linear"``; a prefix ending inside a name, like ``"hea"``, does not match). A key of
    ``overrides`` may also be a parameter's own attribute name (``"bias"``, ``"pos_embed"``),
    which applies first so that a matching module path wins. ``None`` leaves a
    hyperparameter out of the group, so the optimizer's default applies (LR factors then
    have nothing to multiply and are ignored).

    Args:
        model (nn.Module): the model (a DDP/DataParallel wrapper is looked through so names
            do not start with ``module.``).
        base_lr (float | None): the LR of ordinary parameters. Default: None.
        weight_decay (float | None): weight decay of ordinary parameters. Default: None.
        weight_decay_norm (float | None): weight decay of norm-layer parameters.
            Default: None (same as ``weight_decay``).
        bias_lr_factor (float): LR multiplier of biases. Default: 1.0.
        weight_decay_bias (float | None): weight decay of biases outside norm layers.
            Default: None (same as ``weight_decay``).
        lr_factor_func (callable | None): LR multiplier as a function of the parameter's
            full name (detectron2's argument, e.g. layer-wise decay). Default: None.
        overrides (Mapping[str, dict] | None): hyperparameters to set by name, e.g.
            ``{"backbone.pos_embed": {"weight_decay": 0.0}}``. Default: None.
        lr_factors (Mapping[str, float] | None): LR multiplier by name prefix, e.g.
            ``{"head": 10.0}``. Default: None.
        norm_module_types (tuple[type, ...]): module classes treated as norm layers.
            Default: :data:`NORM_MODULE_TYPES`.

    Returns:
        list[dict]: parameter groups, merged by :func:`reduce_param_groups`.

    Raises:
        ConfigError: when a key of ``lr_factors`` matches no parameter (a typo would
            otherwise silently train with the base LR).

    Example:
        >>> groups = get_default_optimizer_params(model, base_lr=0.1, weight_decay=1e-4,
        ...                                       weight_decay_norm=0.0, lr_factors={"head": 10})
        >>> optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    """
    # Over 60 lines only through its docstring (detectron2's nine arguments, each documented);
    # the code below is one pass over the parameters.
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    lr_factors = dict(lr_factors or {})
    overrides = dict(overrides or {})
    if weight_decay_norm is None:
        weight_decay_norm = weight_decay
    if weight_decay_bias is None:
        weight_decay_bias = weight_decay
    _check_prefixes_match(model, lr_factors)

    groups: List[Dict[str, Any]] = []
    seen: Set[nn.Parameter] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            is_bias = param_name == "bias"
            if isinstance(module, norm_module_types):
                decay = weight_decay_norm
            elif is_bias:
                decay = weight_decay_bias
            else:
                decay = weight_decay
            hyperparams: Dict[str, Any] = {}
            if base_lr is not None:
                factor = bias_lr_factor if is_bias else 1.0
                prefix = _longest_matching_prefix(full_name, lr_factors)
                if prefix is not None:
                    factor *= float(lr_factors[prefix])
                if lr_factor_func is not None:
                    factor *= lr_factor_func(full_name)
                hyperparams["lr"] = base_lr * factor
            if decay is not None:
                hyperparams["weight_decay"] = decay
            hyperparams.update(overrides.get(param_name, {}))
            prefix = _longest_matching_prefix(full_name, overrides)
            if prefix is not None:
                hyperparams.update(overrides[prefix])
            groups.append({"params": [param], **hyperparams})
    return reduce_param_groups(groups)


def _expand_param_groups(params: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Turn parameter groups into one group per parameter (detectron2's helper).

    A parameter listed in several groups gets the hyperparameters of all of them, a later
    group's value winning. Parameters keep the order of their first appearance.

    Args:
        params (list[dict]): groups, each with a ``"params"`` list and hyperparameters.

    Returns:
        list[dict]: ``{"params": [p], **hyperparameters}`` for each distinct parameter.
    """
    per_param: Dict[Any, Dict[str, Any]] = {}
    for group in params:
        hyperparams = {k: v for k, v in group.items() if k != "params"}
        for param in group["params"]:
            per_param.setdefault(param, {}).update(hyperparams)
    return [{"params": [param], **hyperparams} for param, hyperparams in per_param.items()]


def reduce_param_groups(params: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Merge parameter groups that have identical hyperparameters.

    Groups are first expanded per parameter (:func:`_expand_param_groups`: a parameter in
    several groups takes the later group's values), then parameters with equal
    hyperparameters are merged, as in detectron2. Fewer groups mean fewer kernel launches on
    the foreach/fused paths. Groups keep the order in which their hyperparameters first
    appear, so the same model always gives the same groups (an optimizer's saved state is
    matched to groups by position).

    Args:
        params (list[dict]): groups, each with a ``"params"`` list and hyperparameters.

    Returns:
        list[dict]: one group per distinct set of hyperparameters.
    """
    merged: Dict[Tuple, Dict[str, Any]] = {}
    for group in _expand_param_groups(params):
        hyperparams = {k: v for k, v in group.items() if k != "params"}
        key = tuple(sorted((k, _hashable(v)) for k, v in hyperparams.items()))
        target = merged.setdefault(key, {"params": [], **hyperparams})
        target["params"].extend(group["params"])
    return list(merged.values())


def _hashable(value: Any) -> Any:
    """Make list-valued hyperparameters (e.g. ``betas``) usable in a dict key."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _longest_matching_prefix(name: str, prefixes: Mapping) -> Optional[str]:
    """Return the longest key of ``prefixes`` that is ``name`` or a dotted prefix of it."""
    best = None
    for prefix in prefixes:
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return best


def _check_prefixes_match(model: nn.Module, lr_factors: Mapping) -> None:
    # Shared parameters count under every name they have, not only the first one.
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    for prefix in lr_factors:
        if not any(name == prefix or name.startswith(prefix + ".") for name in names):
            top_level = sorted({name.split(".")[0] for name in names})
            raise ConfigError(
                f"LR factor prefix {prefix!r} (SOLVER.LR_FACTORS) matches no parameter of "
                f"the model; expected a module path such as one of {top_level}."
            )


def _lr_factors_from_cfg(value: Any) -> Dict[str, float]:
    """Parse ``SOLVER.LR_FACTORS`` (a list of ``[prefix, factor]`` pairs)."""
    factors: Dict[str, float] = {}
    for entry in value:
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], (int, float))
        ):
            raise ConfigError(
                f"SOLVER.LR_FACTORS: bad entry {entry!r}; expected [name_prefix, factor] "
                'pairs such as [["head", 10.0]].'
            )
        factors[entry[0]] = float(entry[1])
    return factors
