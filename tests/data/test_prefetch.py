"""DevicePrefetcher: one batch ahead, in order, and exact resume through SimpleTrainer."""

import pytest
import torch
from torch.utils.data import DataLoader

from engine_lib.data.prefetch import DevicePrefetcher, move_to_device
from engine_lib.data.samplers import TrainingSampler
from engine_lib.engine.train_loop import SimpleTrainer
from tests.engine._toy_training import ToyRegressor, make_samples


class _Counting:
    """A loader that counts the batches drawn from it."""

    def __init__(self, n):
        self.n = n
        self.drawn = 0

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            self.drawn += 1
            yield [{"x": torch.full((2,), float(i))}]


def test_batches_come_in_order_one_drawn_ahead():
    loader = _Counting(5)
    prefetcher = DevicePrefetcher(loader, "cpu")
    seen = []
    for batch in prefetcher:
        seen.append(int(batch[0]["x"][0]))
        # The batch after this one has been drawn (and its copy started) already.
        assert loader.drawn == min(len(seen) + 1, 5)
    assert seen == [0, 1, 2, 3, 4] and len(prefetcher) == 5


def test_move_to_device_keeps_the_structure():
    batch = ({"a": torch.ones(1), "b": [torch.zeros(2), "text"]}, 3)
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, tuple) and moved[1] == 3 and moved[0]["b"][1] == "text"
    assert torch.equal(moved[0]["b"][0], torch.zeros(2))


class _Recording(ToyRegressor):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, batch):
        self.seen.append([float(d["x"][0]) for d in batch])
        return super().forward(batch)


def _trainer(position):
    sampler = TrainingSampler(64, shuffle=True, seed=3)
    sampler.set_position(position)
    loader = DataLoader(make_samples(64), batch_size=4, sampler=sampler, collate_fn=list)
    model = _Recording()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    return SimpleTrainer(model, loader, optimizer, prefetch_device="cpu")


def test_resume_from_samples_consumed_continues_the_exact_stream():
    full = _trainer(0)
    full.train(0, 8)
    first = _trainer(0)
    first.train(0, 3)
    # One batch more was drawn than consumed; the position counts the consumed ones.
    assert first.samples_consumed == 12
    second = _trainer(first.samples_consumed)
    second.train(3, 8)
    assert first.model.seen + second.model.seen == full.model.seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_batches_arrive_on_the_device_in_order():
    loader = DataLoader(
        [{"x": torch.full((4,), float(i))} for i in range(6)],
        batch_size=2,
        collate_fn=list,
        pin_memory=True,
    )
    seen = []
    for batch in DevicePrefetcher(loader, "cuda"):
        assert all(d["x"].is_cuda for d in batch)
        seen += [float(d["x"].sum().item()) / 4 for d in batch]
    assert seen == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
