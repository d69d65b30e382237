"""Data parallelism: DDP, FSDP2 and HSDP wrapping, and activation checkpointing.

A few plain functions that take a model (and a device mesh) and return it wrapped, in the
manner of torchtitan. :func:`parallelize_model` calls them in a fixed order, read from
``PARALLEL.*``; the trainer then builds the optimizer on the result, so that under FSDP it
holds the sharded (DTensor) parameters. Everything is PyTorch's own: ``fully_shard``,
``MixedPrecisionPolicy``, ``CPUOffloadPolicy``, ``init_device_mesh`` and the composable
``checkpoint``. All of it runs on CPU with gloo.

FSDP2 shards parameters in place (the module's class becomes an ``FSDPModule`` subclass):
parameter names keep no wrapper prefix, so LR factors, weight-decay rules, layer freezing
and state-dict keys see the same names as in a single process.
"""

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from engine_lib.checkpoint.dist_types import is_fsdp_module, local_tensor
from engine_lib.config import CfgNode, register_value_check
from engine_lib.config.validators import coerce_like_default
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError

from .ddp import create_ddp_model

__all__ = [
    "STRATEGIES",
    "apply_activation_checkpointing",
    "apply_fsdp",
    "build_mesh",
    "check_parallel_config",
    "default_wrap_modules",
    "is_fsdp",
    "parallelize_model",
    "rank_state_bytes",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

# torch.distributed.fsdp, .tensor, .device_mesh and ._composable are imported inside the
# functions that use them: together they take ~0.7 s to import (sympy, the DTensor op tables),
# which every `import engine_lib.engine` would pay, although most runs shard nothing.
if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

#: The values of ``PARALLEL.STRATEGY``.
STRATEGIES = ("ddp", "fsdp", "hsdp")
_DTYPES = {"": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_mesh(strategy: str, device_type: str) -> "DeviceMesh":
    """The device mesh FSDP shards over.

    Args:
        strategy (str): ``"fsdp"``: a 1-D mesh of all ranks; ``"hsdp"``: a 2-D mesh
            ``("replicate", "shard")``, replicated across machines and sharded within one.
        device_type (str): ``"cpu"`` (gloo) or ``"cuda"`` (NCCL).

    Returns:
        DeviceMesh: the mesh.
    """
    from torch.distributed.device_mesh import init_device_mesh

    world = comm.get_world_size()
    if strategy == "fsdp":
        return init_device_mesh(device_type, (world,), mesh_dim_names=("shard",))
    local = comm.get_local_size()
    if local < 1 or world % local:
        raise ConfigError(
            f"PARALLEL.STRATEGY=hsdp needs the same number of processes on every machine; "
            f"got world size {world} with {local} per machine"
        )
    return init_device_mesh(
        device_type, (world // local, local), mesh_dim_names=("replicate", "shard")
    )


def _modules_of_classes(model: nn.Module, names: Sequence[str], key: str) -> List[nn.Module]:
    """The submodules (not the root) whose class name is in ``names``, children first."""
    found = [m for m in model.modules() if m is not model and type(m).__name__ in names]
    seen = {type(m).__name__ for m in found}
    unknown = [n for n in names if n not in seen]
    if unknown:
        classes = sorted({type(m).__name__ for m in model.modules()})
        raise ConfigError(
            f"{key} names {unknown}, but the model has no module of that class; its classes: "
            f"{classes}"
        )
    # Post-order (inner before outer), as fully_shard wants nested units sharded.
    return found[::-1]


def default_wrap_modules(model: nn.Module) -> List[nn.Module]:
    """The units FSDP shards when ``PARALLEL.FSDP.WRAP`` is empty: the backbone's blocks.

    They are the children of each outermost ``nn.Sequential`` / ``nn.ModuleList`` inside
    the outermost submodule named ``backbone`` (``model.backbone``, or
    ``model.student.backbone`` under distillation): the stages of ``SmallCNN``, the
    ``BasicBlock`` / ``Bottleneck`` blocks of the ResNets. A model without a ``backbone``
    has none (only the root is sharded).

    Args:
        model (nn.Module): the model.

    Returns:
        list[nn.Module]: the units, in module order.
    """
    backbones = [m for name, m in model.named_modules() if name.split(".")[-1] == "backbone"]
    if not backbones:
        return []
    backbone = backbones[0]  # the outermost (a Distiller's is its student's)
    units: List[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if isinstance(module, (nn.Sequential, nn.ModuleList)):
            units.extend(c for c in module.children() if any(True for _ in c.parameters()))
            return
        for child in module.children():
            visit(child)

    visit(backbone)
    return units


def _batch_norms(model: nn.Module) -> List[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def apply_activation_checkpointing(model: nn.Module, class_names: Sequence[str]) -> nn.Module:
    """Recompute the forward of every module of the given classes during backward.

    Uses torch's composable ``checkpoint`` (non-reentrant), which leaves parameter names
    unchanged (unlike ``checkpoint_wrapper``); works with DDP, FSDP and a single process.

    Args:
        model (nn.Module): the model (changed in place).
        class_names (sequence[str]): class names, ``PARALLEL.ACTIVATION_CHECKPOINTING``.

    Returns:
        nn.Module: ``model``.
    """
    modules = _modules_of_classes(model, class_names, "PARALLEL.ACTIVATION_CHECKPOINTING")
    if not modules:
        return model
    from torch.distributed._composable import checkpoint

    for module in modules:
        checkpoint(module)
    logger.info("Activation checkpointing of %s", list(class_names))
    return model


def apply_fsdp(
    model: nn.Module,
    mesh: "DeviceMesh",
    *,
    wrap: Sequence[str] = (),
    reshard_after_forward: bool = True,
    param_dtype: Optional[torch.dtype] = None,
    reduce_dtype: Optional[torch.dtype] = None,
    cpu_offload: bool = False,
) -> nn.Module:
    """Shard ``model`` with FSDP2: each unit (``wrap`` classes, or the default), then the root.

    Args:
        model (nn.Module): the model, on its device (changed in place).
        mesh (DeviceMesh): from :func:`build_mesh`; 2-D for HSDP.
        wrap (sequence[str]): class names of the units; empty: :func:`default_wrap_modules`.
        reshard_after_forward (bool): free the gathered parameters after forward (ZeRO-3);
            False keeps them until backward (ZeRO-2: faster, more memory). The root is never
            resharded after forward, as its parameters are needed first in backward.
        param_dtype (torch.dtype, optional): dtype of the gathered parameters in compute.
        reduce_dtype (torch.dtype, optional): dtype of the gradient reduce-scatter.
        cpu_offload (bool): keep sharded parameters, gradients and optimizer state on CPU.

    Returns:
        nn.Module: ``model`` (now an ``FSDPModule``).
    """
    from torch.distributed.fsdp import (
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
    )

    options: Any = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype),
        "offload_policy": CPUOffloadPolicy() if cpu_offload else OffloadPolicy(),
    }
    units = (
        _modules_of_classes(model, wrap, "PARALLEL.FSDP.WRAP")
        if wrap
        else default_wrap_modules(model)
    )
    if param_dtype is not None:
        # BatchNorm computes with its float32 running statistics, which a low-precision
        # weight cannot meet: each norm layer is a float32 unit of its own that takes and
        # returns param_dtype activations.
        norm_policy = MixedPrecisionPolicy(
            param_dtype=torch.float32, reduce_dtype=torch.float32, output_dtype=param_dtype
        )
        for norm in _batch_norms(model):
            fully_shard(norm, **{**options, "mp_policy": norm_policy})
    for unit in units:
        fully_shard(unit, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(model, reshard_after_forward=False, **options)
    logger.info(
        "FSDP2 over mesh %s: %d unit(s) + the root, reshard_after_forward=%s, param_dtype=%s, "
        "reduce_dtype=%s, cpu_offload=%s",
        mesh,
        len(units),
        reshard_after_forward,
        param_dtype,
        reduce_dtype,
        cpu_offload,
    )
    return model


def check_parallel_config(cfg: CfgNode) -> None:
    """Refuse, at start-up, the combinations of keys that cannot work together.

    Args:
        cfg (CfgNode): the config.

    Raises:
        ConfigError: naming the keys.
    """
    strategy = cfg.PARALLEL.STRATEGY
    if strategy == "ddp":
        return
    if cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.AMP.DTYPE == "float16":
        # The grad scaler would decide to skip a step from this rank's shard alone.
        raise ConfigError(
            f"SOLVER.AMP.DTYPE=float16 with PARALLEL.STRATEGY={strategy} is not supported (the "
            "grad scaler sees one shard); use SOLVER.AMP.DTYPE bfloat16 or "
            "PARALLEL.FSDP.PARAM_DTYPE"
        )
    if cfg.KD.ENABLED and cfg.KD.EMA_TEACHER:
        # The EMA teacher is a whole copy updated from the student's (here sharded) weights.
        raise ConfigError(
            f"KD.EMA_TEACHER with PARALLEL.STRATEGY={strategy} is not supported; use "
            "PARALLEL.STRATEGY ddp or a teacher from KD.MODEL_CONFIG / KD.MODEL_WEIGHTS"
        )
    if cfg.MODEL.DDP.FP16_COMPRESSION:
        raise ConfigError(
            f"MODEL.DDP.FP16_COMPRESSION applies to DDP, not PARALLEL.STRATEGY={strategy}; use "
            "PARALLEL.FSDP.REDUCE_DTYPE instead"
        )
    if cfg.MODEL.COMPILE:
        # Not tried together yet: fully_shard's hooks on compiled submodules.
        raise ConfigError(
            f"MODEL.COMPILE with PARALLEL.STRATEGY={strategy} is not supported yet; use "
            "PARALLEL.STRATEGY ddp to compile, or MODEL.COMPILE False"
        )
    if cfg.PARALLEL.FSDP.CPU_OFFLOAD and cfg.MODEL.DEVICE == "cpu":
        raise ConfigError(
            "PARALLEL.FSDP.CPU_OFFLOAD=True needs MODEL.DEVICE cuda: on cpu the parameters "
            "already live in host memory"
        )


def parallelize_model(cfg: CfgNode, model: nn.Module) -> nn.Module:
    """Apply ``PARALLEL.*`` to ``model``, in a fixed order; build the optimizer afterwards.

    The order: activation checkpointing first (it wraps the forward of the modules that
    ``fully_shard`` then shards as units, so a recomputed forward gathers its parameters),
    then FSDP (each unit, then the root) or DDP. In one process the model is left
    unwrapped whatever the strategy.

    Args:
        cfg (CfgNode): the config.
        model (nn.Module): the model on its device.

    Returns:
        nn.Module: the wrapped model (a DDP wrapper, or ``model`` itself, sharded in place).
    """
    check_parallel_config(cfg)
    apply_activation_checkpointing(model, cfg.PARALLEL.ACTIVATION_CHECKPOINTING)
    strategy = cfg.PARALLEL.STRATEGY
    if strategy == "ddp" or comm.get_world_size() == 1:
        return create_ddp_model(
            model,
            # Frozen layers get no gradient, which DDP only tolerates when told so.
            find_unused_parameters=cfg.MODEL.DDP.FIND_UNUSED_PARAMETERS
            or (bool(cfg.MODEL.FREEZE_LAYERS) and cfg.MODEL.FREEZE_ITERS > 0),
            fp16_compression=cfg.MODEL.DDP.FP16_COMPRESSION,
        )
    fsdp = cfg.PARALLEL.FSDP
    device = next(model.parameters()).device.type
    return apply_fsdp(
        model,
        build_mesh(strategy, device),
        wrap=fsdp.WRAP,
        reshard_after_forward=fsdp.RESHARD_AFTER_FORWARD,
        param_dtype=_DTYPES[fsdp.PARAM_DTYPE],
        reduce_dtype=_DTYPES[fsdp.REDUCE_DTYPE],
        cpu_offload=fsdp.CPU_OFFLOAD,
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose parameter names are the model's: a DDP wrapper's ``module``."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by :func:`apply_fsdp`."""
    return is_fsdp_module(model)


def rank_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> Dict[str, int]:
    """Bytes of parameters, gradients and optimizer state held by this rank.

    A DTensor counts its local shard only (padding included), so under FSDP this is what
    sharding saves; under DDP every rank holds it all.

    Args:
        model (nn.Module): the (wrapped) model.
        optimizer (torch.optim.Optimizer): its optimizer.

    Returns:
        dict: ``"params"``, ``"grads"``, ``"optimizer"`` and ``"total"``, in bytes.
    """

    def nbytes(t: Optional[torch.Tensor]) -> int:
        if t is None:
            return 0
        local = local_tensor(t)
        return local.numel() * local.element_size()

    params = list(model.parameters())
    sizes = {
        "params": sum(nbytes(p) for p in params),
        "grads": sum(nbytes(p.grad) for p in params),
        "optimizer": sum(
            nbytes(v)
            for state in optimizer.state.values()
            for v in state.values()
            if isinstance(v, torch.Tensor) and v.dim() > 0
        ),
    }
    sizes["total"] = sum(sizes.values())
    return sizes


def _check_choice(choices: Sequence[str]) -> Callable[[Any, Any, str, str], Any]:
    def check(value: Any, default: Any, key: str, source: str) -> Any:
        value = coerce_like_default(value, default, key, source)
        if value not in choices:
            raise ConfigError(f"{key} ({source}) must be one of {list(choices)}, got {value!r}")
        return value

    return check


register_value_check("PARALLEL.STRATEGY", _check_choice(STRATEGIES))
for _key in ("PARALLEL.FSDP.PARAM_DTYPE", "PARALLEL.FSDP.REDUCE_DTYPE"):
    register_value_check(_key, _check_choice(tuple(_DTYPES)))
