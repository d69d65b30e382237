"""comm's collectives under a real 2-process job (launch() with gloo on CPU).

One job runs every collective once (see ``dist_helpers.collect_comm_results``); each test
checks one of them, on both ranks.
"""

import subprocess
import sys

import pytest

from engine_lib.engine.launch import launch
from tests.engine.dist_helpers import NUM_ITEMS, collect_comm_results, read_results

WORLD_SIZE = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("comm")
    # "auto": the parent hosts the rendezvous store on a port the OS picked.
    launch(collect_comm_results, WORLD_SIZE, dist_url="auto", args=(str(out_dir),), backend="gloo")
    return read_results(str(out_dir), "comm", WORLD_SIZE)


def test_ranks_and_local_group(results):
    for rank, r in enumerate(results):
        assert (r["rank"], r["world_size"]) == (rank, WORLD_SIZE)
        assert (r["local_rank"], r["local_size"]) == (rank, WORLD_SIZE)
        assert r["is_main"] == (rank == 0)


def test_all_gather_returns_objects_in_rank_order_on_every_rank(results):
    expected = [{"rank": 0, "payload": "x"}, {"rank": 1, "payload": "xx"}]
    for r in results:
        assert r["all_gather_objects"] == expected


def test_all_gather_of_tensors_of_different_sizes(results):
    for r in results:
        first, second = r["all_gather_tensors"]
        assert first.tolist() == [0.0]
        assert second.tolist() == [1.0, 1.0]


def test_gather_only_the_destination_receives(results):
    assert results[0]["gather_to_0"] == [0, 10]
    assert results[1]["gather_to_0"] == []
    assert results[0]["gather_to_1"] == []
    assert results[1]["gather_to_1"] == [0, 10]


def test_gathered_predictions_hold_every_item_once_in_rank_order(results):
    per_rank = results[0]["gathered_predictions"]
    assert len(per_rank) == WORLD_SIZE
    merged = [p for rank_predictions in per_rank for p in rank_predictions]
    assert [p["item"] for p in merged] == list(range(NUM_ITEMS))
    assert all(p["score"] == p["item"] * 0.5 for p in merged)
    assert results[1]["gathered_predictions"] == []


def test_reduce_dict_averages_or_sums_on_every_rank(results):
    for r in results:
        assert r["reduce_mean"] == {"a": 1.5, "b": 15.0}
        assert r["reduce_sum"] == {"a": 3.0, "b": 30.0}


def test_synchronize_waits_for_every_rank(results):
    # Rank 1 wrote the marker one second late, before entering the barrier.
    assert results[0]["marker_seen_after_synchronize"]


def test_shared_random_seed_agrees_although_generators_differ(results):
    assert results[0]["shared_seed"] == results[1]["shared_seed"]
    assert results[0]["local_draw"] != results[1]["local_draw"]


_RELEASE_SCRIPT = """
import os, sys
import torch.distributed as dist
from engine_lib.utils import comm

def threads():
    return len(os.listdir("/proc/self/task"))

before = threads()
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
comm.create_local_process_group(1)
dist.destroy_process_group()
after_destroy = threads()
comm.release_process_groups()
print(before, after_destroy, threads())
"""


def test_release_process_groups_stops_the_cached_groups_threads(tmp_path):
    # A fresh interpreter: in the test process, threads of other tests (loggers, writers,
    # data loaders) come and go and would make the count meaningless.
    proc = subprocess.run(
        [sys.executable, "-c", _RELEASE_SCRIPT, str(tmp_path / "rdzv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after_destroy, after_release = map(int, proc.stdout.split()[-3:])
    # The cached local group still runs gloo's threads until it is released.
    assert after_destroy > before
    assert after_release <= before
