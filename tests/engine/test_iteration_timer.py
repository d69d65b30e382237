"""IterationTimer's final line: the speed, and the share of the step spent waiting for data."""

import logging
import re
import time

from engine_lib.engine import hooks
from engine_lib.engine.train_loop import TrainerBase

from ._toy_training import batches, make_trainer

SPEED = re.compile(
    r"Overall training speed: 9 iterations in \S+ \((\d+\.\d+) s / it, (\d+)% of it waiting "
    r"for data\)"
)


def _slow(data, seconds):
    for batch in data:
        time.sleep(seconds)
        yield batch


def _speed_line(caplog, data):
    trainer = make_trainer(data=data, hooks=[hooks.IterationTimer(warmup_iter=2)])
    with caplog.at_level(logging.INFO, logger="engine_lib.engine.hooks.iteration_timer"):
        trainer.train(0, 10)
    match = SPEED.search(caplog.text)
    assert match, caplog.text
    return float(match.group(1)), int(match.group(2))


def test_speed_line_gives_the_share_of_the_step_spent_waiting_for_data(caplog):
    # Each batch takes 50 ms to arrive; the toy step itself takes well under that.
    seconds_per_it, share = _speed_line(caplog, _slow(batches(10), 0.05))
    assert seconds_per_it >= 0.05
    assert 50 <= share <= 100


def test_speed_line_with_data_ready_at_once(caplog):
    _, share = _speed_line(caplog, batches(10))
    assert 0 <= share < 50


class _NoDataTrainer(TrainerBase):
    """A trainer whose step records no data time."""

    def run_step(self):
        pass


def test_speed_line_without_data_times(caplog):
    trainer = _NoDataTrainer()
    trainer.register_hooks([hooks.IterationTimer(warmup_iter=2)])
    with caplog.at_level(logging.INFO, logger="engine_lib.engine.hooks.iteration_timer"):
        trainer.train(0, 3)
    line = r"Overall training speed: 2 iterations in \S+ \(\d+\.\d+ s / it\)\n"
    assert re.search(line, caplog.text), caplog.text
