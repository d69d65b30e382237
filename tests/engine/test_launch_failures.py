"""Which worker ``WorkerFailedError`` names: the one that raised first, by its own record."""

import os
import pickle
import time
from types import SimpleNamespace

import torch.multiprocessing as mp

from engine_lib.engine.launch.failures import describe_failure, record_failure_time


def _write_traceback(path, last_line, mtime):
    with open(path, "wb") as f:
        pickle.dump(f"Traceback (most recent call last):\n  ...\n{last_line}\n", f)
    os.utime(path, (mtime, mtime))


def test_the_first_raiser_is_named_even_if_its_traceback_file_is_written_last(tmp_path):
    # Rank 1 raised first and recorded it; destroying its process group woke rank 0 (blocked
    # in a collective), whose traceback file was written before rank 1's own.
    files = [str(tmp_path / "0.err"), str(tmp_path / "1.err")]
    now = time.time()
    record_failure_time(str(tmp_path), 1)
    time.sleep(0.01)
    record_failure_time(str(tmp_path), 0)
    _write_traceback(files[0], "RuntimeError: Connection closed by peer", now + 1)
    _write_traceback(files[1], "RuntimeError: boom on rank 1", now + 2)
    context = SimpleNamespace(
        error_files=files, processes=[SimpleNamespace(pid=100), SimpleNamespace(pid=101)]
    )
    error = mp.ProcessRaisedException("connection closed", error_index=0, error_pid=100)

    failure = describe_failure(context, error, lambda i: i, record_dir=str(tmp_path))
    assert (failure.rank, failure.pid) == (1, 101)
    first, afterwards = str(failure).split("Also failed afterwards")
    assert first.startswith("Worker with rank 1 (pid 101)") and "boom on rank 1" in first
    assert "rank 0: RuntimeError: Connection closed by peer" in afterwards

    # Without the records the files' times decide, and name the wrong worker.
    assert describe_failure(context, error, lambda i: i).rank == 0
