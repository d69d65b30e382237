"""Data: catalogs of data sets, samplers, the dataset mapper and the loader builders.

Importing this package registers the built-in data sets (``digits_train``, ``digits_test``).
"""

# config_ranges registers the value ranges of the data keys.
from . import (
    config_ranges,  # noqa: F401
    samplers,
)
from .build import (
    build_test_loader,
    build_train_loader,
    build_training_sampler,
    epoch_size,
    get_dataset_dicts,
    get_training_sampler,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import DrawSeedSampler, MapDataset, trivial_batch_collator, worker_batch_collator
from .datasets import (
    load_cifar10_dicts,
    load_digits_dicts,
    load_image_folder_dicts,
    register_cifar10,
    register_image_folder,
)
from .mapper import DatasetMapper, build_augmentations, read_image
from .metadata_check import check_label_range, check_metadata_consistency

__all__ = [
    "DatasetCatalog",
    "MetadataCatalog",
    "Metadata",
    "build_train_loader",
    "build_test_loader",
    "build_training_sampler",
    "get_dataset_dicts",
    "get_training_sampler",
    "epoch_size",
    "check_metadata_consistency",
    "check_label_range",
    "DatasetMapper",
    "build_augmentations",
    "read_image",
    "MapDataset",
    "DrawSeedSampler",
    "trivial_batch_collator",
    "worker_batch_collator",
    "samplers",
    "register_image_folder",
    "register_cifar10",
    "load_image_folder_dicts",
    "load_cifar10_dicts",
    "load_digits_dicts",
]
