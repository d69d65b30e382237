"""Loaders: batch layout, seeding independent of workers, exact resume, errors."""

import itertools
import random

import numpy as np
import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.data import (
    DatasetCatalog,
    build_test_loader,
    build_train_loader,
    get_training_sampler,
)
from engine_lib.data.samplers import IdentitySampler, TrainingSampler
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError, UnknownNameError


def _cfg(num_workers=0):
    cfg = get_cfg()
    cfg.SEED = 7
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.DATALOADER.NUM_WORKERS = num_workers
    cfg.INPUT.SIZE_TRAIN = [12, 12]
    cfg.INPUT.FLIP.PROB = 0.5
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    cfg.INPUT.RANDOM_ERASING.ENABLED = True
    return cfg


def _batches(loader, n):
    return [[(d["image_id"], d["image"]) for d in batch] for batch in itertools.islice(loader, n)]


def _assert_same(a, b):
    assert [[i for i, _ in batch] for batch in a] == [[i for i, _ in batch] for batch in b]
    for batch_a, batch_b in zip(a, b):
        for (_, x), (_, y) in zip(batch_a, batch_b):
            assert torch.equal(x, y)


def test_train_batches_are_lists_of_mapped_dicts():
    batch = next(iter(build_train_loader(_cfg())))
    assert isinstance(batch, list) and len(batch) == 8
    assert batch[0]["image"].shape == (3, 12, 12) and isinstance(batch[0]["label"], int)


def test_augmented_batches_do_not_depend_on_workers_and_resume_exactly():
    reference = _batches(build_train_loader(_cfg(num_workers=0)), 6)
    assert not torch.equal(reference[0][0][1], reference[0][1][1])
    _assert_same(_batches(build_train_loader(_cfg(num_workers=0)), 6), reference)

    # Resume after 3 batches with 2 workers: the same samples with the same augmentations.
    loader = build_train_loader(_cfg(num_workers=2))
    get_training_sampler(loader).set_position(3 * 8)
    _assert_same(_batches(loader, 3), reference[3:])
    # Repositioning the same (persistent-worker) loader and iterating again works too.
    get_training_sampler(loader).set_position(0)
    _assert_same(_batches(loader, 6), reference)


def test_a_different_seed_gives_different_batches():
    cfg = _cfg()
    cfg.SEED = 8
    other = _batches(build_train_loader(cfg), 1)
    reference = _batches(build_train_loader(_cfg()), 1)
    assert [i for i, _ in other[0]] != [i for i, _ in reference[0]]


def test_data_loading_leaves_global_rngs_untouched():
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)  # noqa: NPY002
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1])  # noqa: NPY002
    loader = build_train_loader(_cfg())
    _batches(loader, 2)
    list(itertools.islice(build_test_loader(_cfg(), "digits_test"), 2))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert (np.random.get_state()[1] == states[2]).all()  # noqa: NPY002


def test_batch_size_not_divisible_by_world_size(monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 3)
    with pytest.raises(ConfigError, match=r"SOLVER.IMS_PER_BATCH is 8.*world size \(3\)"):
        build_train_loader(_cfg())


def test_per_rank_batch_and_sharding_under_two_ranks(monkeypatch):
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    streams = []
    for rank in range(2):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        loader = build_train_loader(_cfg())
        batches = _batches(loader, 3)
        assert all(len(batch) == 4 for batch in batches)
        streams.append([i for batch in batches for i, _ in batch])
    expected = TrainingSampler(1437, seed=7, rank=0, world_size=1).epoch_indices(0)[:24]
    ids = [d["image_id"] for d in DatasetCatalog.get("digits_train")]
    interleaved = [s for pair in zip(*streams) for s in pair]
    assert interleaved == [ids[i] for i in expected]


def test_test_loader_yields_each_sample_once_in_order(monkeypatch):
    cfg = get_cfg()
    cfg.TEST.IMS_PER_BATCH = 50
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    gathered = []
    for rank in range(2):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        batches = list(build_test_loader(cfg, "digits_test"))
        assert [len(b) for b in batches] == [50, 50, 50, 30]
        gathered += [d["image_id"] for b in batches for d in b]
    assert gathered == [d["image_id"] for d in DatasetCatalog.get("digits_test")]


def test_several_train_sets_are_concatenated():
    cfg = _cfg()
    cfg.DATASETS.TRAIN = ("digits_train", "digits_test")
    sampler = get_training_sampler(build_train_loader(cfg))
    assert sorted(sampler.epoch_indices(0)) == list(range(1797))


def test_identity_sampler_from_config():
    cfg = _cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "IdentitySampler"
    cfg.DATALOADER.NUM_INSTANCE = 4
    loader = build_train_loader(cfg)
    assert isinstance(get_training_sampler(loader), IdentitySampler)
    labels = [d["label"] for d in next(iter(loader))]
    assert sorted(labels.count(label) for label in set(labels)) == [4, 4]
    cfg.DATALOADER.NUM_INSTANCE = 3
    with pytest.raises(ConfigError, match="DATALOADER.NUM_INSTANCE"):
        build_train_loader(cfg)


def test_unknown_sampler_and_data_set_names():
    cfg = _cfg()
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainSampler"
    with pytest.raises(UnknownNameError, match="Did you mean 'TrainingSampler'"):
        build_train_loader(cfg)
    with pytest.raises(UnknownNameError, match="digits_tests"):
        build_test_loader(get_cfg(), "digits_tests")


def test_object_path_accepts_plain_sampler():
    dataset = [{"label": i % 2, "value": i} for i in range(10)]
    loader = build_train_loader(
        dataset, sampler=torch.utils.data.SequentialSampler(dataset), total_batch_size=5, seed=0
    )
    assert [[d["value"] for d in b] for b in loader] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert get_training_sampler(loader) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loader_pins_memory_and_keeps_cuda_rng():
    cfg = _cfg()
    cfg.MODEL.DEVICE = "cuda"
    cuda_state = torch.cuda.get_rng_state()
    batch = next(iter(build_train_loader(cfg)))
    assert batch[0]["image"].is_pinned()
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
