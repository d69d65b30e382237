"""Hostile and careless inputs (issue 14): remote weights, YAML aliases, symlink loops,
file permissions, stale temporary files, a full disk, and weights of another model.

All cases run in this process: none is about the entry point.
"""

import errno
import hashlib
import http.server
import logging
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import get_cfg
from engine_lib.utils import file_io
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.file_io import NoSpaceLeftError, PathManager, atomic_write
from engine_lib.utils.remote_weights import (
    RemoteWeightsError,
    allow_remote_weights,
    cache_path,
    expected_sha256,
)


# ---------------------------------------------------------------- remote weights
class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``<port>:<raw request path>`` as the body of every GET."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.body_for(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def servers():
    """Two HTTP servers on 127.0.0.1 (two ports), each answering with its own bytes."""
    started = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        port = server.server_address[1]
        server.body_for = lambda path, port=port: f"{port}:{path}".encode()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in started]
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def remote_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    allow_remote_weights(True)
    yield tmp_path / "cache"
    allow_remote_weights(False)


def test_remote_weights_are_refused_by_default(servers, tmp_path):
    url = f"{servers[0]}/w/model.pth"
    with pytest.raises(RemoteWeightsError, match="MODEL.ALLOW_REMOTE_WEIGHTS"):
        PathManager.get_local_path(url)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(RemoteWeightsError, match=f"URL {url} are not downloaded"):
        Checkpointer(model).load(url)


def test_remote_backbone_weights_are_refused_naming_both_keys(servers):
    from engine_lib.modeling.backbone.pretrain import load_pretrained_backbone

    with pytest.raises(ConfigError) as raised:
        load_pretrained_backbone(torch.nn.Linear(2, 2), f"{servers[0]}/b.pth")
    message = str(raised.value)
    assert message.startswith("MODEL.BACKBONE.PRETRAIN_PATH") and "\n" not in message
    assert "set MODEL.ALLOW_REMOTE_WEIGHTS True" in message


def test_remote_weights_cache_stays_inside_and_keys_the_whole_url(servers, remote_on):
    traversal = f"{servers[0]}/a/../../../../x/evil.sh"
    local = PathManager.get_local_path(traversal)
    cache = os.path.realpath(remote_on)
    assert os.path.commonpath([cache, os.path.realpath(local)]) == cache
    assert not os.path.exists(os.path.join(os.path.dirname(cache), "x"))
    # The same path on two ports (hosts) gives two cache entries, each with its own bytes.
    first = PathManager.get_local_path(f"{servers[0]}/w/model.pth")
    second = PathManager.get_local_path(f"{servers[1]}/w/model.pth")
    assert first != second
    port0, port1 = (s.rsplit(":", 1)[1] for s in servers)
    with open(first, "rb") as f:
        assert f.read() == f"{port0}:/w/model.pth".encode()
    with open(second, "rb") as f:
        assert f.read() == f"{port1}:/w/model.pth".encode()


def test_remote_weights_hash_is_checked(servers, remote_on):
    good = hashlib.sha256(b"%s:/h/ok.pth" % servers[0].rsplit(":", 1)[1].encode()).hexdigest()
    assert expected_sha256(f"{servers[0]}/h/ok.pth#sha256={good}") == good
    local = PathManager.get_local_path(f"{servers[0]}/h/ok.pth#sha256={good}")
    assert os.path.isfile(local)
    bad = f"{servers[0]}/h/resnet-deadbeef.pth"  # torch.hub's name-<sha256 prefix> form
    assert expected_sha256(bad) == "deadbeef"
    with pytest.raises(RemoteWeightsError, match="expects deadbeef; the download was removed"):
        PathManager.get_local_path(bad)
    assert not os.path.exists(cache_path(bad))


# ---------------------------------------------------------------- config files
def test_yaml_billion_laughs_is_refused_at_once(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"line 2.*alias \*a is not allowed in config files"):
        get_cfg().merge_from_file(str(path))
    assert time.perf_counter() - start < 1.0


def test_yaml_alias_in_a_base_file_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: &lr 0.1\n  WARMUP_FACTOR: *lr\n")
    (tmp_path / "top.yaml").write_text("_BASE_: base.yaml\n")
    with pytest.raises(ConfigError, match="base.yaml.*alias \\*lr"):
        get_cfg().merge_from_file(str(tmp_path / "top.yaml"))


def test_base_symlink_loop_reports_the_cycle(tmp_path):
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    (tmp_path / "top.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"symlink loop: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "top.yaml"))
    # A symlink back to a file of the chain is a _BASE_ cycle, not a 40-level path.
    (tmp_path / "c.yaml").write_text("_BASE_: d.yaml\n")
    os.symlink("c.yaml", tmp_path / "d.yaml")
    with pytest.raises(ConfigError, match=r"_BASE_ cycle in config files: .*c\.yaml -> .*d\.yaml"):
        get_cfg().merge_from_file(str(tmp_path / "c.yaml"))


# ---------------------------------------------------------------- files we rewrite
def test_rewritten_files_keep_their_permissions(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_final")
    for name in ("model_final.pth", "last_checkpoint"):
        os.chmod(tmp_path / name, 0o600)
    config = tmp_path / "config.yaml"
    config.write_text("old\n")
    os.chmod(config, 0o640)
    checkpointer.save("model_final")
    with atomic_write(str(config), "w") as f:
        f.write("new\n")
    modes = {n: stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in os.listdir(tmp_path)}
    assert modes == {"model_final.pth": 0o600, "last_checkpoint": 0o600, "config.yaml": 0o640}


def test_temp_files_of_a_killed_writer_are_removed_at_start(tmp_path, caplog):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".model_0000004.pth.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".model_0000009.pth.{os.getpid()}.0123abcd.tmp"  # a writer still running
    other = tmp_path / ".model_0000004.pth.tmp"  # not our pattern: the user's file
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    with caplog.at_level(logging.INFO, logger="engine_lib.utils.file_io"):
        Checkpointer(torch.nn.Linear(2, 2), str(tmp_path))
    assert not stale.exists() and live.exists() and other.exists()
    assert f"Removed {stale}" in caplog.text


# ---------------------------------------------------------------- a full disk
def test_full_disk_names_the_file_and_keeps_the_resume_point(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_0000004", iteration=4)
    before = sorted(os.listdir(tmp_path))

    def full(obj, f, *args, **kwargs):
        f.write(b"some bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(NoSpaceLeftError) as raised:
        checkpointer.save("model_0000009", iteration=9)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"No space left on device while writing {tmp_path}/model_0000009")
    assert "last_checkpoint still names" in message and "model_0000004.pth" in message
    assert sorted(os.listdir(tmp_path)) == before
    monkeypatch.undo()
    assert Checkpointer(model, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 4


def test_full_disk_from_torch_zip_writer_on_a_real_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        Checkpointer(torch.nn.Linear(8, 8), str(mount)).save("model_0000001")
        with pytest.raises(NoSpaceLeftError, match="model_final.pth; the checkpoint was not"):
            Checkpointer(torch.nn.Linear(400, 400), str(mount)).save("model_final")
        assert sorted(os.listdir(mount)) == ["last_checkpoint", "model_0000001.pth"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ---------------------------------------------------------------- honest messages
def test_weights_of_another_model_report_counts_and_warn(tmp_path, caplog):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    path = str(tmp_path / "other.pth")
    torch.save({"model": {"0.bias": torch.zeros(4), "head.w": torch.zeros(1)}}, path)
    with caplog.at_level(logging.INFO, logger="engine_lib.checkpoint.checkpointer"):
        Checkpointer(model).load(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("ONLY 1 of the model's 6 parameters and buffers loaded")
        and "(5 missing or of another shape, 1 in the file but not in the model)" in m
        for m in warnings
    ), warnings
    assert "All other parameters were loaded" not in caplog.text
    caplog.clear()
    torch.save({"model": model.state_dict()}, path)
    with caplog.at_level(logging.INFO, logger="engine_lib.checkpoint.checkpointer"):
        Checkpointer(model).load(path)
    assert "6 of the model's 6 parameters and buffers loaded" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_file_io_module_exports():
    assert {"atomic_write", "remove_stale_temp_files", "NoSpaceLeftError"} <= set(file_io.__all__)


# The entry point, with a disk that fills up at the second checkpoint.
_FULL_AT_SECOND_SAVE = """
import errno, runpy, sys, torch
real_save, saves = torch.save, []
def save(obj, f, *args, **kwargs):
    saves.append(f)
    if len(saves) > 1:
        raise OSError(errno.ENOSPC, "No space left on device")
    real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_full_disk_in_train_net_is_one_line_and_resume_point_kept(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "out"
    argv = [
        os.path.join(repo, "tools", "train_net.py"),
        "--config-file",
        os.path.join(repo, "configs", "Digits", "cnn.yaml"),
        "MODEL.BACKBONE.WIDTH", "4", "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "8",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", _FULL_AT_SECOND_SAVE, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: No space left on device while writing {out}/model_0000001.pth; the checkpoint "
        f"was not written and last_checkpoint still names {out}/model_0000000.pth, which "
        "--resume continues from. Free some space (or choose another OUTPUT_DIR) and resume."
    )
    assert "Traceback" not in result.stderr
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_the_config_key_turns_remote_weights_on_where_weights_are_loaded(servers, tmp_path):
    from engine_lib.engine import DefaultPredictor
    from engine_lib.utils import remote_weights

    cfg = get_cfg()
    cfg.MODEL.ALLOW_REMOTE_WEIGHTS = True
    try:
        DefaultPredictor(cfg)  # no weights: random init; the switch follows the key
        assert remote_weights._ALLOWED["value"] is True
        cfg.MODEL.ALLOW_REMOTE_WEIGHTS = False
        DefaultPredictor(cfg)
        assert remote_weights._ALLOWED["value"] is False
    finally:
        allow_remote_weights(False)


def test_dist_timeout_flag_reaches_launch():
    import argparse
    from datetime import timedelta

    from engine_lib.engine.launch import DEFAULT_TIMEOUT
    from engine_lib.engine.script import _dist_timeout

    assert _dist_timeout(argparse.Namespace(dist_timeout=7.5)) == timedelta(seconds=7.5)
    assert _dist_timeout(argparse.Namespace(dist_timeout=None)) == DEFAULT_TIMEOUT
    assert _dist_timeout(argparse.Namespace()) == DEFAULT_TIMEOUT
