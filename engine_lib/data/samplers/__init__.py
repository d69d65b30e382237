"""Samplers: infinite resumable training streams sharded by rank, and the inference split."""

from .base import ResumableSampler
from .identity import IdentitySampler
from .inference import InferenceSampler
from .repeat_factor import RepeatFactorTrainingSampler
from .training import TrainingSampler

# fastreid's name for the same P x K sampler, so ported configs and code keep working.
NaiveIdentitySampler = IdentitySampler

__all__ = [
    "ResumableSampler",
    "TrainingSampler",
    "RepeatFactorTrainingSampler",
    "IdentitySampler",
    "NaiveIdentitySampler",
    "InferenceSampler",
]
