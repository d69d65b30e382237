"""Samplers: per-epoch permutations, rank sharding, exact resume of position."""

import itertools
from collections import Counter

import pytest

from engine_lib.data.samplers import (
    IdentitySampler,
    InferenceSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
)


def take(iterable, n):
    return list(itertools.islice(iterable, n))


def make_training(seed=0, rank=0, world_size=1, size=10):
    return TrainingSampler(size, seed=seed, rank=rank, world_size=world_size)


def make_repeat(seed=0, rank=0, world_size=1):
    labels = [0] * 12 + [1] * 2 + [2]
    dicts = [{"label": label} for label in labels]
    factors = RepeatFactorTrainingSampler.repeat_factors_from_labels(dicts, repeat_thresh=0.5)
    return RepeatFactorTrainingSampler(factors, seed=seed, rank=rank, world_size=world_size)


IDENTITY_LABELS = [i % 7 for i in range(45)]


def make_identity(seed=0, rank=0, world_size=1):
    return IdentitySampler(IDENTITY_LABELS, 6, 2, seed=seed, rank=rank, world_size=world_size)


MAKERS = [make_training, make_repeat, make_identity]


def test_training_sampler_epochs_are_permutations_that_depend_on_seed_and_epoch():
    stream = take(make_training(seed=3), 40)
    epochs = [stream[i : i + 10] for i in range(0, 40, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert len({tuple(e) for e in epochs}) == 4  # reshuffled every epoch
    assert epochs[2] == make_training(seed=3).epoch_indices(2)
    assert take(make_training(seed=3), 40) == stream
    assert take(make_training(seed=4), 40) != stream


def test_training_sampler_without_shuffle_repeats_the_dataset_in_order():
    sampler = TrainingSampler(4, shuffle=False, seed=0, rank=0, world_size=1)
    assert take(sampler, 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("make", MAKERS)
def test_ranks_split_the_global_stream_disjointly(make):
    world_size = 3
    single = take(make(seed=5), 120)
    per_rank = [take(make(seed=5, rank=r, world_size=world_size), 40) for r in range(3)]
    if make is make_identity:
        # Sharded by whole batches: rank r takes batches r, r + 3, ... of each epoch (whose
        # batch count is cut to a multiple of the world size).
        sharded = make(seed=5, rank=0, world_size=world_size)
        for r in range(world_size):
            mine = [b for e in range(10) for b in sharded.epoch_batches(e)[r::world_size]]
            assert per_rank[r] == [i for b in mine for i in b][:40]
            epoch0 = sharded.epoch_batches(0)
            assert len(epoch0) % world_size == 0
            assert len({i for b in epoch0 for i in b}) == 6 * len(epoch0)  # disjoint
    else:
        for r in range(world_size):
            assert per_rank[r] == single[r::world_size]


def test_training_sampler_ranks_see_each_sample_once_per_epoch():
    # 10 samples, 3 ranks: the stride runs across the epoch boundary.
    first_epoch = [take(make_training(seed=1, rank=r, world_size=3), 4) for r in range(3)]
    seen = [first_epoch[r][n] for n in range(4) for r in range(3) if r + 3 * n < 10]
    assert sorted(seen) == list(range(10))


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("position", [0, 7, 12, 61])
def test_set_position_resumes_the_stream_exactly(make, world_size, position):
    rank = world_size - 1
    reference = make(seed=9, rank=rank, world_size=world_size)
    expected = take(reference.iter_with_draw_seeds(), position + 30)[position:]
    resumed = make(seed=9, rank=rank, world_size=world_size)
    resumed.set_position(position)
    assert take(resumed.iter_with_draw_seeds(), 30) == expected
    assert take(iter(resumed), 30) == [index for index, _ in expected]


@pytest.mark.parametrize("make", MAKERS)
def test_state_dict_restores_seed_and_position(make):
    original = make(seed=11)
    original.set_position(25)
    expected = take(original, 20)
    restored = make(seed=12)
    restored.load_state_dict(original.state_dict())
    assert restored.seed == 11 and restored.position == 25
    assert take(restored, 20) == expected


def test_draw_seeds_differ_between_positions_and_ranks():
    rank0 = take(make_training(seed=0, rank=0, world_size=2).iter_with_draw_seeds(), 20)
    rank1 = take(make_training(seed=0, rank=1, world_size=2).iter_with_draw_seeds(), 20)
    seeds = [s for _, s in rank0] + [s for _, s in rank1]
    assert len(set(seeds)) == 40


def test_set_position_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        make_training().set_position(-1)


def test_repeat_factor_sampler_over_samples_rare_classes():
    sampler = make_repeat(seed=2)
    counts = Counter()
    for epoch in range(20):
        counts.update(sampler.epoch_indices(epoch))
        assert sampler.epoch_length(epoch) == len(sampler.epoch_indices(epoch))
    per_sample = {i: counts[i] / 20 for i in range(15)}
    assert per_sample[0] == 1.0  # frequent class: once per epoch
    assert per_sample[14] == pytest.approx((0.5 / (1 / 15)) ** 0.5, abs=0.35)  # ~2.74
    lengths = {sampler.epoch_length(e) for e in range(20)}
    assert len(lengths) > 1  # stochastic rounding changes the epoch length


def test_identity_sampler_batches_are_p_identities_times_k():
    for rank in range(2):
        stream = take(make_identity(seed=4, rank=rank, world_size=2), 6 * 30)
        for b in range(30):
            labels = [IDENTITY_LABELS[i] for i in stream[6 * b : 6 * b + 6]]
            assert Counter(labels).most_common() and set(Counter(labels).values()) == {2}
            assert len(set(labels)) == 3


def test_identity_sampler_rejects_batch_not_divisible_by_k():
    with pytest.raises(ValueError, match="batch size 7 and 2 instances"):
        IdentitySampler(IDENTITY_LABELS, 7, 2, seed=0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="only 7"):
        IdentitySampler(IDENTITY_LABELS, 16, 2, seed=0, rank=0, world_size=1)


@pytest.mark.parametrize("size,world_size", [(10, 3), (2, 4), (0, 2), (9, 1)])
def test_inference_sampler_covers_each_index_once_in_rank_order(size, world_size):
    samplers = [InferenceSampler(size, rank=r, world_size=world_size) for r in range(world_size)]
    shards = [list(s) for s in samplers]
    assert [i for shard in shards for i in shard] == list(range(size))
    assert [len(s) for s in samplers] == [len(shard) for shard in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
