"""Per-sample seeding: once per sample, isolation once per batch, never inside a worker."""

import io
import itertools
import pickle
import random

import numpy as np
import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.data import build_train_loader, common, worker_batch_collator
from engine_lib.data.common import MapDataset
from engine_lib.data.seeding import TAG_DRAW, DrawSeeds, derive_seed, seed_sample, seeded_rng


def _cfg():
    cfg = get_cfg()
    cfg.SEED = 7
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.INPUT.SIZE_TRAIN = [12, 12]
    cfg.INPUT.CROP.ENABLED = True
    return cfg


class _Counter:
    """Wrap a function, counting its calls."""

    def __init__(self, function):
        self.function = function
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


def _forbid(monkeypatch, *targets):
    def forbidden(*args, **kwargs):
        raise AssertionError("saved or restored a global generator state")

    for owner, name in targets:
        monkeypatch.setattr(owner, name, forbidden)


def test_draw_seeds_equal_derive_seed():
    seeds = DrawSeeds(7, 3)
    for position in (0, 1, 2, 1000, 2**40):
        assert seeds(position) == derive_seed(TAG_DRAW, 7, 3, position)


def test_main_process_seeds_each_sample_once_and_isolates_once_per_batch(monkeypatch):
    seeding = _Counter(common.seed_sample)
    isolation = _Counter(common.isolated_rngs)
    monkeypatch.setattr(common, "seed_sample", seeding)
    monkeypatch.setattr(common, "isolated_rngs", isolation)
    numpy_seed, python_seed = _Counter(np.random.seed), _Counter(random.seed)
    monkeypatch.setattr(np.random, "seed", numpy_seed)
    monkeypatch.setattr(random, "seed", python_seed)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    batches = list(itertools.islice(build_train_loader(_cfg()), 3))
    assert [len(b) for b in batches] == [8, 8, 8]
    assert seeding.calls == 24
    assert isolation.calls == 3
    # DatasetMapper draws from torch only: numpy and python are neither seeded nor saved.
    assert numpy_seed.calls == python_seed.calls == 0
    assert torch.equal(torch.get_rng_state(), state)


def test_a_worker_seeds_each_sample_and_saves_nothing(monkeypatch):
    loader = build_train_loader(_cfg())
    keys = list(itertools.islice(iter(loader.sampler), 4))
    expected = [loader.dataset[key]["image"] for key in keys]
    monkeypatch.setattr(common, "get_worker_info", lambda: object())
    _forbid(
        monkeypatch,
        (torch, "get_rng_state"),
        (torch.random, "fork_rng"),
        (np.random, "get_state"),
        (random, "getstate"),
    )
    seeding = _Counter(common.seed_sample)
    monkeypatch.setattr(common, "seed_sample", seeding)
    mapped = loader.dataset.__getitems__(keys)
    assert seeding.calls == 4
    assert all(torch.equal(a["image"], b) for a, b in zip(mapped, expected))


class _NumpyMapper:
    """A mapper drawing from numpy's and python's global generators, which asks for seeds."""

    seed_numpy_and_python = True

    def __call__(self, record):
        return {"noise": np.random.randint(1 << 30), "pick": random.random(), **record}  # noqa: NPY002


def test_mappers_that_ask_get_numpy_and_python_seeded_and_isolated():
    dataset = MapDataset([{"index": i} for i in range(4)], _NumpyMapper())
    keys = [(i, 100 + i) for i in range(4)]
    np.random.seed(5)  # noqa: NPY002
    random.seed(5)
    numpy_state, python_state = np.random.get_state()[1], random.getstate()  # noqa: NPY002
    first = dataset.__getitems__(keys)
    assert dataset.__getitems__(keys) == first
    assert dataset[keys[2]] == first[2]
    assert len({d["noise"] for d in first}) == 4
    assert (np.random.get_state()[1] == numpy_state).all()  # noqa: NPY002
    assert random.getstate() == python_state


def test_seeded_rng_seeds_and_restores_all_three():
    torch.manual_seed(1)
    state = torch.get_rng_state()
    with seeded_rng(9):
        inside = (torch.rand(1).item(), np.random.rand(), random.random())  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), state)
    seed_sample(9, numpy_and_python=True)
    assert inside == (torch.rand(1).item(), np.random.rand(), random.random())  # noqa: NPY002


def test_worker_batch_collator_packs_tensors_into_one_storage():
    batch = [
        {"image": torch.arange(12, dtype=torch.uint8).view(3, 2, 2).permute(0, 2, 1), "label": 1},
        {"image": torch.full((3, 3, 1), 7, dtype=torch.uint8), "label": 2, "w": torch.ones(2)},
        {"image": torch.zeros(3, 1, 1, dtype=torch.uint8), "label": 3, "w": torch.zeros(5)},
    ]
    packed = worker_batch_collator(batch)
    assert [d.keys() for d in packed] == [d.keys() for d in batch]
    for a, b in zip(packed, batch):
        assert a is not b and a["label"] == b["label"]
        for key in ("image", "w"):
            if key in b:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key])
    images = {d["image"].untyped_storage().data_ptr() for d in packed}
    weights = {d["w"].untyped_storage().data_ptr() for d in packed[1:]}
    assert len(images) == 1 and len(weights) == 1
    # It pickles as one storage per dtype and unpickles as a plain list of the same dicts.
    storages = []
    kinds = (torch.TypedStorage, torch.UntypedStorage)
    pickler = pickle.Pickler(io.BytesIO())
    pickler.persistent_id = lambda obj: storages.append(obj) if isinstance(obj, kinds) else None
    pickler.dump(packed)
    assert len(storages) == 2
    received = pickle.loads(pickle.dumps(packed))
    assert type(received) is list and [d.keys() for d in received] == [d.keys() for d in batch]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(received, batch))
    assert worker_batch_collator([(1, 2)]) == [(1, 2)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_collate_function_follows_the_number_of_workers(num_workers):
    cfg = _cfg()
    cfg.DATALOADER.NUM_WORKERS = num_workers
    loader = build_train_loader(cfg)
    packs = loader.collate_fn is worker_batch_collator
    assert packs == (num_workers > 0)
