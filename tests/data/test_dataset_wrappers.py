"""Several training sets: concatenation, metadata checks, per-set repeat factors, class balance."""

import itertools
import logging
import os
import pickle
from collections import Counter

import pytest

from engine_lib.config import get_cfg
from engine_lib.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_test_loader,
    build_train_loader,
    epoch_size,
    get_dataset_dicts,
    get_training_sampler,
)
from engine_lib.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from engine_lib.engine import launch
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError

CLASSES = ["cat", "dog", "bird"]
SIZE_A, SIZE_B = 12, 6


def _dicts(source, size, labels):
    return [{"source": source, "uid": f"{source}{i}", "label": labels[i]} for i in range(size)]


def _register(name, dicts, classes=CLASSES):
    DatasetCatalog.register(name, lambda: dicts)
    if classes is not None:
        MetadataCatalog.get(name).set(thing_classes=classes)


@pytest.fixture
def two_sets(names):
    """Register ``wrap_a`` (12 samples, labels 0..2) and ``wrap_b`` (6 samples, label 2)."""
    _register("wrap_a", _dicts("a", SIZE_A, [i % 3 for i in range(SIZE_A)]))
    _register("wrap_b", _dicts("b", SIZE_B, [2] * SIZE_B))
    names += ["wrap_a", "wrap_b"]
    return ("wrap_a", "wrap_b")


def _identity(d):
    return d


def _cfg(train, repeat=(), sampler="TrainingSampler", threshold=0.0, batch=6):
    cfg = get_cfg()
    cfg.SEED = 3
    cfg.DATASETS.TRAIN = tuple(train)
    cfg.DATASETS.TRAIN_REPEAT = tuple(repeat)
    cfg.DATALOADER.SAMPLER_TRAIN = sampler
    cfg.DATALOADER.REPEAT_THRESHOLD = threshold
    cfg.SOLVER.IMS_PER_BATCH = batch
    return cfg


def _loader(cfg):
    return build_train_loader(cfg, mapper=_identity)


def _draws_per_sample(sampler, epochs):
    """Average number of draws of each index over ``epochs`` epochs of the global stream."""
    counts = Counter(i for e in range(epochs) for i in sampler.epoch_indices(e))
    return {i: counts[i] / epochs for i in range(SIZE_A + SIZE_B)}


def test_concatenated_sets_keep_order_labels_and_length(two_sets):
    dicts = get_dataset_dicts(two_sets)
    assert [d["uid"] for d in dicts] == [f"a{i}" for i in range(12)] + [f"b{i}" for i in range(6)]
    assert [d["label"] for d in dicts] == [0, 1, 2] * 4 + [2] * 6
    loader = _loader(_cfg(two_sets))
    assert type(get_training_sampler(loader)) is TrainingSampler
    assert epoch_size(loader) == SIZE_A + SIZE_B
    # One epoch of batches covers both sets, each sample once.
    drawn = [d["uid"] for b in itertools.islice(loader, 3) for d in b]
    assert sorted(drawn) == sorted(d["uid"] for d in dicts)


def test_different_class_lists_are_an_error_naming_both_sets(names):
    _register("wrap_a", _dicts("a", 3, [0, 1, 2]))
    _register("wrap_order", _dicts("o", 3, [0, 1, 2]), classes=["dog", "cat", "bird"])
    _register("wrap_more", _dicts("m", 3, [0, 1, 2]), classes=CLASSES + ["fish"])
    names += ["wrap_a", "wrap_order", "wrap_more"]
    with pytest.raises(ConfigError, match=r"'wrap_a' and 'wrap_order'.*index 0 is 'cat'"):
        get_dataset_dicts(["wrap_a", "wrap_order"])
    with pytest.raises(
        ConfigError, match=r"'wrap_a' and 'wrap_more'.*only in 'wrap_more': \['fish'"
    ):
        _loader(_cfg(["wrap_a", "wrap_more"]))
    # Several test sets in one loader are checked the same way.
    with pytest.raises(ConfigError, match="'wrap_a' and 'wrap_order'"):
        build_test_loader(get_cfg(), ["wrap_a", "wrap_order"], mapper=_identity)


def test_a_set_without_class_names_gets_a_warning(names, caplog):
    _register("wrap_a", _dicts("a", 3, [0, 1, 2]))
    _register("wrap_bare", _dicts("x", 2, [0, 1]), classes=None)
    names += ["wrap_a", "wrap_bare"]
    with caplog.at_level(logging.WARNING, logger="engine_lib.data"):
        assert len(get_dataset_dicts(["wrap_a", "wrap_bare"])) == 5
    assert "'wrap_bare' have no 'thing_classes'" in caplog.text


def test_label_outside_the_class_list_is_an_error(names):
    _register("wrap_bad", _dicts("a", 4, [0, 1, 3, 2]))
    names.append("wrap_bad")
    with pytest.raises(ConfigError, match=r"'wrap_bad': sample 2 has label 3.*3 classes"):
        get_dataset_dicts("wrap_bad")


@pytest.mark.parametrize("repeat_b", [3, 2.5])
def test_per_set_repeat_factor_multiplies_draws_per_epoch(two_sets, repeat_b, caplog):
    with caplog.at_level(logging.INFO, logger="engine_lib.data"):
        loader = _loader(_cfg(two_sets, repeat=(1, repeat_b)))
    assert "sampling with RepeatFactorTrainingSampler" in caplog.text
    sampler = get_training_sampler(loader)
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    assert epoch_size(loader) == round(SIZE_A + SIZE_B * repeat_b)
    draws = _draws_per_sample(sampler, 40)
    assert all(draws[i] == 1.0 for i in range(SIZE_A))
    b_draws = [draws[i] for i in range(SIZE_A, SIZE_A + SIZE_B)]
    if repeat_b == 3:
        assert b_draws == [3.0] * SIZE_B
    else:
        assert sum(b_draws) / SIZE_B == pytest.approx(2.5, abs=0.1)
        assert set(b_draws) != {2.5}  # rounded at random per epoch, not fixed
    # The loader really yields that mix: set b is ~3/4 (or 15/27) of the samples drawn.
    drawn = [d["source"] for b in itertools.islice(loader, 30) for d in b]
    expected = SIZE_B * repeat_b / (SIZE_A + SIZE_B * repeat_b)
    assert drawn.count("b") / len(drawn) == pytest.approx(expected, abs=0.05)


def test_repeated_loader_resumes_exactly(two_sets):
    cfg = _cfg(two_sets, repeat=(0.5, 2))
    reference = [[d["uid"] for d in b] for b in itertools.islice(_loader(cfg), 12)]
    resumed = _loader(cfg)
    get_training_sampler(resumed).set_position(5 * 6)
    assert [[d["uid"] for d in b] for b in itertools.islice(resumed, 7)] == reference[5:]


@pytest.mark.parametrize("name", ["RepeatFactorTrainingSampler", "ClassBalancedSampler"])
def test_class_balanced_sampling_raises_the_rare_class_frequency(names, name):
    # 16 samples of class 0, 2 of class 1: frequency 1/9 < 0.5 gives sqrt(0.5 * 9) ~ 2.12.
    labels = [0] * 16 + [1] * 2
    _register("wrap_rare", _dicts("r", 18, labels))
    names.append("wrap_rare")
    sampler = get_training_sampler(_loader(_cfg(["wrap_rare"], sampler=name, threshold=0.5)))
    draws = _draws_per_sample(sampler, 60)
    assert all(draws[i] == 1.0 for i in range(16))
    assert (draws[16] + draws[17]) / 2 == pytest.approx(4.5**0.5, abs=0.15)
    assert epoch_size(sampler) == round(16 + 2 * 4.5**0.5)


def test_class_balance_and_set_factor_compose(two_sets):
    # Over a + b, label 0 and 1 have 4 of 18 samples each (frequency 2/9 < 0.5): factor 1.5.
    cfg = _cfg(two_sets, repeat=(2, 1), sampler="ClassBalancedSampler", threshold=0.5)
    sampler = get_training_sampler(_loader(cfg))
    draws = _draws_per_sample(sampler, 60)
    a_rare = [draws[i] for i in range(SIZE_A) if i % 3 != 2]
    assert sum(a_rare) / len(a_rare) == pytest.approx(2 * 1.5, abs=0.15)
    assert all(draws[i] == 2.0 for i in range(SIZE_A) if i % 3 == 2)  # label 2 is frequent
    assert all(draws[i] == 1.0 for i in range(SIZE_A, SIZE_A + SIZE_B))


def test_bad_repeat_config_is_an_error(two_sets, names):
    with pytest.raises(ConfigError, match=r"TRAIN_REPEAT has 3 factor.*DATASETS.TRAIN has 2"):
        _loader(_cfg(two_sets, repeat=(1, 2, 3)))
    with pytest.raises(ConfigError, match=r"factor of data set 'wrap_b' is -1"):
        _loader(_cfg(two_sets, repeat=(1, -1)))
    with pytest.raises(ConfigError, match=r"factor of data set 'wrap_a' is 0"):
        _loader(_cfg(two_sets, repeat=(0, 1)))
    with pytest.raises(ConfigError, match="REPEAT_THRESHOLD is -0.1"):
        _loader(_cfg(two_sets, sampler="ClassBalancedSampler", threshold=-0.1))
    with pytest.raises(ConfigError, match="cannot be combined with.*IdentitySampler"):
        _loader(_cfg(two_sets, repeat=(1, 2), sampler="IdentitySampler"))
    _register("wrap_nolabel", [{"uid": i} for i in range(4)], classes=None)
    names.append("wrap_nolabel")
    with pytest.raises(ConfigError, match="needs an int 'label'.*sample 0"):
        _loader(_cfg(["wrap_nolabel"], sampler="ClassBalancedSampler", threshold=0.5))


def _two_rank_worker(out_dir):
    if "wrap_a" not in DatasetCatalog:  # a spawned process starts with the built-ins only
        _register("wrap_a", _dicts("a", SIZE_A, [i % 3 for i in range(SIZE_A)]))
        _register("wrap_b", _dicts("b", SIZE_B, [2] * SIZE_B))
    loader = _loader(_cfg(("wrap_a", "wrap_b"), repeat=(1, 3), batch=4))
    sampler = get_training_sampler(loader)
    uids = [d["uid"] for b in itertools.islice(loader, 15) for d in b]
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.pkl"), "wb") as f:
        pickle.dump({"uids": uids, "world_size": sampler.world_size}, f)


def test_two_processes_draw_disjoint_shards_of_the_repeated_stream(two_sets, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    launch(_two_rank_worker, 2, args=(str(tmp_path),), backend="gloo")
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Rank r takes the global positions r, r + 2, ...: interleaved, they are the global stream.
    single = RepeatFactorTrainingSampler(
        [1.0] * SIZE_A + [3.0] * SIZE_B, seed=3, rank=0, world_size=1
    )
    dicts = get_dataset_dicts(two_sets)
    stream = single.epoch_indices(0) + single.epoch_indices(1)
    assert [u for pair in zip(ranks[0]["uids"], ranks[1]["uids"]) for u in pair] == [
        dicts[i]["uid"] for i in stream[:60]
    ]
