"""Config keys of the ImageClassification project: where its data sets live on disk."""

from engine_lib.config import CfgNode as CN

__all__ = ["add_image_classification_config"]


def add_image_classification_config(cfg: CN) -> None:
    """Add the project's keys to ``cfg`` (call before merging a config file).

    Args:
        cfg (CfgNode): the config from ``get_cfg()``; modified in place.
    """
    cfg.DATASETS.IMAGE_FOLDER = CN()
    # Folder with "train/" and "val/" sub-folders, each in ImageFolder layout
    # (<split>/<class>/<image>); registered as "image_folder_train" / "image_folder_val".
    cfg.DATASETS.IMAGE_FOLDER.ROOT = ""
    cfg.DATASETS.CIFAR10 = CN()
    # Folder with the extracted CIFAR-10 python version (data_batch_1..5, test_batch,
    # batches.meta); registered as "cifar10_train" / "cifar10_test".
    cfg.DATASETS.CIFAR10.ROOT = ""
