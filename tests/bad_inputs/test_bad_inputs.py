"""A corpus of bad inputs to tools/train_net.py and tools/predict.py.

Every case must end with a non-zero exit, one line ``error: ...`` last on stderr that names
the culprit and what was expected, no traceback, and the files of a previous run in
``OUTPUT_DIR`` (and every other file the case made) byte-for-byte as they were.

Importing torch costs seconds, so most cases run in one driver process (``_driver.py``),
each through the tool's ``__main__`` exactly as on the command line; the cases that need a
process of their own (spawned workers, argparse's exit) run as separate processes, alongside.
"""

import argparse
import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from PIL import Image

from engine_lib.config import get_cfg
from engine_lib.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
PREDICT = os.path.join(REPO, "tools", "predict.py")
FOLDER_TRAIN_NET = os.path.join(HERE, "folder_train_net.py")
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")

# A tiny, fast variant of the digits config.
TINY = [
    "MODEL.BACKBONE.WIDTH",
    "4",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.IMS_PER_BATCH",
    "8",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "100",
]


class Ctx:
    """Paths of one case: its own directory, the seeded OUTPUT_DIR, the shared checkpoints."""

    def __init__(self, root: str, ckpts: Dict[str, str]) -> None:
        self.root = root
        self.out = os.path.join(root, "out")
        self.ckpts = ckpts

    def file(self, name: str, content) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        return path


@dataclass
class Case:
    id: str
    argv: Callable[[Ctx], List[str]]
    # Substrings the error line must contain: the culprit and what was expected.
    needles: Callable[[Ctx], Tuple[str, ...]]
    own_process: bool = False
    skip: str = ""
    # Files a case may change: a failure met after training started keeps the run's log
    # (appended to log.txt) and its config.yaml; nothing else (checkpoints, metrics) changes.
    may_change: Tuple[str, ...] = ()


def train(ctx: Ctx, *opts: str, flags: Tuple[str, ...] = (), config: str = CONFIG) -> List[str]:
    """A train_net command line: flags, the tiny overrides, OUTPUT_DIR, then ``opts``."""
    return [TRAIN_NET, "--config-file", config, *flags, *TINY, "OUTPUT_DIR", ctx.out, *opts]


def yaml_case(ctx: Ctx, text: str, *opts: str, name: str = "bad.yaml") -> List[str]:
    return train(ctx, *opts, config=ctx.file(name, text.replace("@BASE@", CONFIG)))


def folder(
    ctx: Ctx, *specs: str, opts: Tuple[str, ...] = (), flags: Tuple[str, ...] = ()
) -> List[str]:
    folders = [x for spec in specs for x in ("--image-folder", spec)]
    return [
        FOLDER_TRAIN_NET,
        "--config-file",
        CONFIG,
        *folders,
        *flags,
        *TINY,
        "OUTPUT_DIR",
        ctx.out,
        *opts,
    ]


# A data error met in training: the run must have started, so it resumes the previous run
# (a fresh run in a used OUTPUT_DIR is refused before that) past its iteration 9.
RESUMED = ("SOLVER.MAX_ITER", "30")


def png(size: int = 16, claim: int = 0, cut: bool = False) -> bytes:
    """A PNG; ``claim``: its header says claim x claim pixels; ``cut``: its second half is lost."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    if claim:  # IHDR: length, type, then width and height, then the CRC of type + data
        data[16:24] = struct.pack(">II", claim, claim)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data[: len(data) // 2] if cut else data)


def two_classes(image: bytes) -> Dict[str, bytes]:
    return {"cat/a.png": image, "dog/b.png": image}


def make_image_root(ctx: Ctx, images: Dict[str, bytes], empty_classes=()) -> str:
    root = os.path.join(ctx.root, "images")
    os.makedirs(root, exist_ok=True)
    for name in empty_classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for rel, data in images.items():
        ctx.file(os.path.join("images", rel), data)
    return root


CASES = [
    # ---------------------------------------------------------------- config keys and values
    Case(
        "unknown_top_level_key_yaml",
        lambda c: yaml_case(c, "_BASE_: @BASE@\nFOO_BAR: 1\n"),
        lambda c: ("FOO_BAR", "bad.yaml"),
    ),
    Case(
        "unknown_nested_key_yaml",
        lambda c: yaml_case(c, "_BASE_: @BASE@\nSOLVER:\n  BASE_LRR: 0.1\n"),
        lambda c: ("SOLVER.BASE_LRR", "SOLVER.BASE_LR", "bad.yaml"),
    ),
    Case(
        "unknown_top_level_key_cli",
        lambda c: train(c, "FOO_BAR", "1"),
        lambda c: ("FOO_BAR", "command line"),
    ),
    Case(
        "unknown_nested_key_cli",
        lambda c: train(c, "SOLVER.MAX_ITERS", "3"),
        lambda c: ("SOLVER.MAX_ITERS", "SOLVER.MAX_ITER", "command line"),
    ),
    Case(
        "unknown_group_cli",
        lambda c: train(c, "SOLVR.MAX_ITER", "3"),
        lambda c: ("SOLVR.MAX_ITER", "command line", "SOLVER.MAX_ITER"),
    ),
    Case(
        "wrong_type_cli",
        lambda c: train(c, "SOLVER.MAX_ITER", "many"),
        lambda c: ("SOLVER.MAX_ITER", "many", "int"),
    ),
    Case(
        "wrong_type_yaml",
        lambda c: yaml_case(c, "_BASE_: @BASE@\nSOLVER:\n  BASE_LR: [1, 2]\n"),
        lambda c: ("SOLVER.BASE_LR", "bad.yaml", "float"),
    ),
    Case(
        "odd_number_of_opts",
        lambda c: train(c, "SOLVER.BASE_LR"),
        lambda c: ("SOLVER.BASE_LR", "KEY VALUE"),
    ),
    Case(
        "bad_value_input_format",
        lambda c: train(c, "INPUT.FORMAT", "CMYK"),
        lambda c: ("INPUT.FORMAT", "CMYK", "RGB"),
    ),
    # ---------------------------------------------------------------- config files
    Case(
        "malformed_yaml",
        lambda c: yaml_case(c, "_BASE_: @BASE@\nSOLVER: [1, 2\n"),
        lambda c: ("bad.yaml", "Malformed YAML"),
    ),
    Case("empty_yaml", lambda c: yaml_case(c, ""), lambda c: ("bad.yaml", "empty")),
    Case(
        "yaml_not_a_mapping",
        lambda c: yaml_case(c, "- SOLVER\n- MODEL\n"),
        lambda c: ("bad.yaml", "mapping"),
    ),
    Case(
        "missing_config_file",
        lambda c: train(c, config=os.path.join(c.root, "nope.yaml")),
        lambda c: ("nope.yaml", "not found"),
    ),
    Case(
        "missing_base",
        lambda c: yaml_case(c, "_BASE_: missing_base.yaml\n"),
        lambda c: ("missing_base.yaml", "not found"),
    ),
    Case(
        "cyclic_base",
        lambda c: (
            c.file("b.yaml", "_BASE_: a.yaml\n"),
            yaml_case(c, "_BASE_: b.yaml\n", name="a.yaml"),
        )[1],
        lambda c: ("_BASE_", "cycle", "a.yaml", "b.yaml"),
    ),
    # ---------------------------------------------------------------- unknown names
    Case(
        "unknown_optimizer",
        lambda c: train(c, "SOLVER.OPTIMIZER", "Adamm"),
        lambda c: ("Adamm", "SOLVER.OPTIMIZER", "Adam"),
    ),
    Case(
        "unknown_lr_scheduler",
        lambda c: train(c, "SOLVER.LR_SCHEDULER_NAME", "WarmupCosLR"),
        lambda c: ("WarmupCosLR", "WarmupCosineLR"),
    ),
    Case(
        "unknown_meta_architecture",
        lambda c: train(c, "MODEL.META_ARCHITECTURE", "ImageClassifer"),
        lambda c: ("ImageClassifer", "ImageClassifier"),
    ),
    Case(
        "unknown_backbone",
        lambda c: train(c, "MODEL.BACKBONE.NAME", "SmallCN"),
        lambda c: ("SmallCN", "SmallCNN"),
    ),
    Case(
        "unknown_train_dataset",
        lambda c: train(c, "DATASETS.TRAIN", "('digits_trian',)"),
        lambda c: ("DATASETS.TRAIN", "digits_trian", "digits_train"),
    ),
    Case(
        "unknown_test_dataset",
        lambda c: train(c, "DATASETS.TEST", "('digits_tset',)"),
        lambda c: ("DATASETS.TEST", "digits_tset", "digits_test"),
    ),
    Case(
        "unknown_test_dataset_eval_only",
        lambda c: train(c, "DATASETS.TEST", "('nope',)", flags=("--eval-only",)),
        lambda c: ("DATASETS.TEST", "nope"),
    ),
    Case(
        "batch_not_divisible_by_world_size",
        lambda c: train(c, "SOLVER.IMS_PER_BATCH", "3", flags=("--num-gpus", "2")),
        lambda c: ("IMS_PER_BATCH", "3", "2"),
        own_process=True,
    ),
    # ---------------------------------------------------------------- weights and checkpoints
    Case(
        "missing_weights_file",
        lambda c: train(c, "MODEL.WEIGHTS", os.path.join(c.root, "nope.pth")),
        lambda c: ("nope.pth", "does not exist"),
    ),
    Case(
        "weights_path_is_a_directory",
        lambda c: train(c, "MODEL.WEIGHTS", c.root),
        lambda c: (c.root, "is a directory", ".pth"),
    ),
    Case(
        "empty_weights_file",
        lambda c: train(c, "MODEL.WEIGHTS", c.file("empty.pth", b"")),
        lambda c: ("empty.pth", "expected"),
    ),
    Case(
        "truncated_checkpoint",
        lambda c: train(c, "MODEL.WEIGHTS", c.file("cut.pth", c.ckpts["truncated"])),
        lambda c: ("cut.pth", "truncated"),
    ),
    Case(
        "random_bytes_checkpoint",
        # Fixed noise: how the unpickler gives up varies with the bytes (os.urandom made the
        # message change from run to run).
        lambda c: train(c, "MODEL.WEIGHTS", c.file("noise.pth", random.Random(0).randbytes(4096))),
        lambda c: ("noise.pth", "not a PyTorch checkpoint", "neither a zip archive nor a pickle"),
    ),
    Case(
        "checkpoint_holding_a_list",
        lambda c: train(c, "MODEL.WEIGHTS", c.ckpts["list"]),
        lambda c: ("list.pth", "expected a dict"),
    ),
    Case(
        "pickle_checkpoint_refused",
        lambda c: train(c, "MODEL.WEIGHTS", c.ckpts["pickle"]),
        lambda c: (
            "pickle.pth",
            "weights_only",
            "argparse.Namespace",
            "MODEL.WEIGHTS_ALLOW_PICKLE True",
        ),
    ),
    Case(
        "eval_only_missing_weights",
        lambda c: train(c, "MODEL.WEIGHTS", "nope.pth", flags=("--eval-only",)),
        lambda c: ("nope.pth", "does not exist"),
    ),
    Case(
        "resume_from_missing_path",
        lambda c: train(c, flags=("--resume", os.path.join(c.root, "gone.pth"))),
        lambda c: ("gone.pth", "does not exist"),
    ),
    Case(
        "resume_with_only_corrupt_checkpoints",
        lambda c: (
            c.file("out/model_0000009.pth", b"garbage"),
            c.file("out/model_0000019.pth", b"garbage"),
            c.file("out/last_checkpoint", "model_0000019.pth"),
            train(c, "SOLVER.MAX_ITER", "30", flags=("--resume",)),
        )[-1],
        lambda c: ("No readable checkpoint", "model_0000019.pth"),
    ),
    Case(
        "resume_with_a_changed_model",
        # OUTPUT_DIR holds model_0000009.pth of a width-4 model; the config now says 8.
        lambda c: train(
            c, "MODEL.BACKBONE.WIDTH", "8", "SOLVER.MAX_ITER", "30", flags=("--resume",)
        ),
        lambda c: ("Cannot resume", "model_0000009.pth", "different model", "backbone."),
    ),
    # ---------------------------------------------------------------- image data
    Case(
        "image_folder_without_images",
        lambda c: folder(
            c,
            f"bad_empty={make_image_root(c, {}, empty_classes=('cat', 'dog'))}",
            opts=("DATASETS.TRAIN", "('bad_empty',)"),
        ),
        lambda c: ("images", "contains no images"),
    ),
    Case(
        "image_folder_missing",
        lambda c: folder(c, f"bad_missing={c.root}/no_such_dir"),
        lambda c: ("no_such_dir", "does not exist"),
    ),
    Case(
        "image_folder_without_class_dirs",
        lambda c: folder(c, f"bad_flat={make_image_root(c, {'x.png': b'1'})}"),
        lambda c: ("images", "class sub-directories"),
    ),
    Case(
        "unreadable_image_in_training_set",
        lambda c: folder(
            c,
            f"bad_pixels={make_image_root(c, {'cat/a.png': b'junk', 'dog/b.png': b'junk'})}",
            opts=("DATASETS.TRAIN", "('bad_pixels',)", "SOLVER.IMS_PER_BATCH", "2", *RESUMED),
            flags=("--resume",),
        ),
        lambda c: ("Cannot read image file", ".png", "PNG, JPEG"),
        may_change=("out/config.yaml", "out/log.txt"),
    ),
    Case(
        "decompression_bomb_image",
        lambda c: folder(
            c,
            f"bomb={make_image_root(c, two_classes(png(claim=50000)))}",
            opts=("DATASETS.TRAIN", "('bomb',)", "SOLVER.IMS_PER_BATCH", "2", *RESUMED),
            flags=("--resume",),
        ),
        lambda c: ("Cannot read image file", ".png", "2500000000 pixels", "decompression bomb"),
        may_change=("out/config.yaml", "out/log.txt"),
    ),
    Case(
        "truncated_image_in_a_worker",
        lambda c: folder(
            c,
            f"cut={make_image_root(c, two_classes(png(64, cut=True)))}",
            opts=(
                "DATASETS.TRAIN",
                "('cut',)",
                "SOLVER.IMS_PER_BATCH",
                "2",
                "DATALOADER.NUM_WORKERS",
                "2",
                *RESUMED,
            ),
            flags=("--resume",),
        ),
        # The worker's error, as one line: not "Caught ConfigError in DataLoader worker".
        lambda c: ("error: Cannot read image file", ".png", "truncated"),
        may_change=("out/config.yaml", "out/log.txt"),
    ),
    Case(
        "unreadable_image_predict",
        lambda c: [
            PREDICT,
            "--config-file",
            CONFIG,
            "--input",
            c.file("broken.png", b"\x89PNG not really"),
            "--opts",
            *TINY,
            "OUTPUT_DIR",
            c.out,
        ],
        lambda c: ("broken.png", "Cannot read image"),
    ),
    Case(
        "predict_missing_input",
        lambda c: [PREDICT, "--config-file", CONFIG, "--input", os.path.join(c.root, "*.jpg")],
        lambda c: ("*.jpg", "not a file"),
    ),
    # ---------------------------------------------------------------- launch flags
    Case(
        "machine_rank_out_of_range",
        lambda c: train(
            c,
            flags=("--num-machines", "2", "--machine-rank", "2", "--dist-url", "tcp://10.0.0.1:1"),
        ),
        lambda c: ("--machine-rank 2", "0 to 1"),
    ),
    Case(
        "dist_url_without_scheme",
        lambda c: train(c, flags=("--num-gpus", "2", "--dist-url", "localhost:29500")),
        lambda c: ("localhost:29500", "tcp://HOST:PORT"),
    ),
    Case(
        "dist_url_without_port",
        lambda c: train(c, flags=("--num-gpus", "2", "--dist-url", "tcp://localhost")),
        lambda c: ("tcp://localhost", "tcp://HOST:PORT"),
    ),
    Case(
        "zero_processes",
        lambda c: train(c, flags=("--num-gpus", "0")),
        lambda c: ("--num-gpus", "0"),
    ),
    # ---------------------------------------------------------------- OUTPUT_DIR
    Case(
        "output_dir_under_a_file",
        lambda c: train(c, "OUTPUT_DIR", os.path.join(c.file("plain", "x"), "run")),
        lambda c: ("OUTPUT_DIR", "plain"),
    ),
    Case(
        "output_dir_is_a_file",
        lambda c: train(c, "OUTPUT_DIR", c.file("plain", "x")),
        lambda c: ("OUTPUT_DIR", "plain"),
    ),
    Case(
        "output_dir_read_only",
        lambda c: (
            os.makedirs(os.path.join(c.root, "ro"), exist_ok=True),
            os.chmod(os.path.join(c.root, "ro"), 0o500),
            train(c, "OUTPUT_DIR", os.path.join(c.root, "ro", "run")),
        )[-1],
        lambda c: ("OUTPUT_DIR", "ro"),
        skip="root may write anywhere" if hasattr(os, "geteuid") and os.geteuid() == 0 else "",
    ),
    # ---------------------------------------------------------------- a used OUTPUT_DIR
    Case(
        "fresh_run_over_a_previous_run",
        lambda c: train(c),
        lambda c: ("holds a previous run", "model_0000009.pth", "--resume", "--overwrite"),
    ),
    Case(
        "resume_past_max_iter",
        # The previous run's checkpoint has trained 10 iterations; TINY says MAX_ITER 2.
        lambda c: train(c, flags=("--resume",)),
        lambda c: ("Cannot resume", "10 iterations", "SOLVER.MAX_ITER=2"),
    ),
    # ---------------------------------------------------------------- value ranges
    # (each key's range is checked in-process in test_value_ranges.py; these go end to end)
    Case(
        "base_lr_nan_in_yaml",
        lambda c: yaml_case(c, "_BASE_: @BASE@\nSOLVER:\n  BASE_LR: .nan\n"),
        lambda c: ("SOLVER.BASE_LR", "nan", "bad.yaml", ">= 0"),
    ),
    Case(
        "checkpoint_period_zero",
        lambda c: train(c, "SOLVER.CHECKPOINT_PERIOD", "0"),
        lambda c: ("SOLVER.CHECKPOINT_PERIOD", "got 0", ">= 1"),
    ),
    Case(
        "test_batch_zero",
        lambda c: train(c, "TEST.IMS_PER_BATCH", "0"),
        lambda c: ("TEST.IMS_PER_BATCH", "got 0", ">= 1"),
    ),
    Case(
        "datasets_train_unhashable",
        lambda c: train(c, "DATASETS.TRAIN", "[['digits_train']]"),
        lambda c: ("DATASETS.TRAIN", "list of data set names"),
    ),
]

# A run left in OUTPUT_DIR by an earlier job; no case may change it.
PREVIOUS_RUN = {
    "config.yaml": "SOLVER:\n  MAX_ITER: 10\n",
    "log.txt": "[11/22 10:00:00] engine_lib INFO: an earlier run\n",
    "metrics.json": '{"iteration": 9, "total_loss": 1.5}\n',
    "last_checkpoint": "model_0000009.pth",
}


def tiny_cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([*TINY, *opts])
    return cfg


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny checkpoints made once: good, other-shaped head, pickled objects, a list."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    paths = {"good": str(root / "good.pth")}
    torch.save({"model": model.state_dict(), "iteration": 9}, paths["good"])
    seven = build_model(tiny_cfg("MODEL.HEADS.NUM_CLASSES", "7"))
    paths["seven_classes"] = str(root / "seven_classes.pth")
    torch.save({"model": seven.state_dict()}, paths["seven_classes"])
    paths["pickle"] = str(root / "pickle.pth")
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, paths["pickle"])
    paths["list"] = str(root / "list.pth")
    torch.save([1, 2, 3], paths["list"])
    with open(paths["good"], "rb") as f:
        data = f.read()
    paths["truncated"] = data[: len(data) // 2]
    return paths


def seed_previous_run(out: str, good_checkpoint: str) -> None:
    os.makedirs(out, exist_ok=True)
    for name, text in PREVIOUS_RUN.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    with open(good_checkpoint, "rb") as src:
        data = src.read()
    with open(os.path.join(out, "model_0000009.pth"), "wb") as f:
        f.write(data)


def snapshot(root: str) -> Dict[str, Tuple[str, int]]:
    """sha256 and mtime of every file under ``root``, by relative path."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            found[os.path.relpath(path, root)] = (digest, os.stat(path).st_mtime_ns)
    return found


def run_process(argv: List[str]) -> Dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300
    )
    seconds = time.perf_counter() - start
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr, "seconds": seconds}


def restore_permissions(root: str) -> None:
    for dirpath, dirs, _ in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(dirpath, name), 0o700)


# Success cases that run in an OUTPUT_DIR seeded with PREVIOUS_RUN: case id -> directory.
SEEDED_SUCCESS = {"eval_only_in_a_run_dir": "eval_only", "overwrite_a_previous_run": "overwrite"}


# Commands that must succeed, run by the same driver (see the tests at the end).
def _success_cases(tmp: str, checkpoints: Dict[str, str]) -> Dict[str, List[str]]:
    def out(name):
        return ["OUTPUT_DIR", os.path.join(tmp, name)]

    return {
        "mismatched_shapes": [
            TRAIN_NET,
            "--config-file",
            CONFIG,
            *TINY,
            "MODEL.WEIGHTS",
            checkpoints["seven_classes"],
            *out("mismatch"),
        ],
        "resume_without_checkpoint": [
            TRAIN_NET,
            "--config-file",
            CONFIG,
            "--resume",
            *TINY,
            *out("fresh"),
        ],
        # Both run in an OUTPUT_DIR that holds a previous run (SEEDED_SUCCESS).
        "eval_only_in_a_run_dir": [
            TRAIN_NET,
            "--config-file",
            CONFIG,
            "--eval-only",
            *TINY,
            "MODEL.WEIGHTS",
            checkpoints["good"],
            *out("eval_only"),
        ],
        "overwrite_a_previous_run": [
            TRAIN_NET,
            "--config-file",
            CONFIG,
            "--overwrite",
            *TINY,
            *out("overwrite"),
        ],
        "pickle_opt_in": [
            TRAIN_NET,
            "--config-file",
            CONFIG,
            *TINY,
            "MODEL.WEIGHTS",
            checkpoints["pickle"],
            "MODEL.WEIGHTS_ALLOW_PICKLE",
            "True",
            *out("pickle"),
        ],
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, checkpoints):
    """Run every case; return ``{id: (result, files before, files after)}``."""
    base = tmp_path_factory.mktemp("bad_inputs")
    ctxs, argvs, before = {}, {}, {}
    for case in CASES:
        if case.skip:
            continue
        ctx = Ctx(str(base / case.id), checkpoints)
        os.makedirs(ctx.root)
        seed_previous_run(ctx.out, checkpoints["good"])
        argvs[case.id] = [str(a) for a in case.argv(ctx)]
        ctxs[case.id] = ctx
        before[case.id] = snapshot(ctx.root)
    success = _success_cases(str(base / "success"), checkpoints)
    for name in SEEDED_SUCCESS.values():
        seed_previous_run(str(base / "success" / name), checkpoints["good"])
    in_driver = [c.id for c in CASES if not c.skip and not c.own_process]
    cases_file, results_file = base / "cases.json", base / "results.json"
    with open(cases_file, "w") as f:
        json.dump(
            [{"id": i, "argv": argvs[i]} for i in in_driver]
            + [{"id": i, "argv": a} for i, a in success.items()],
            f,
        )
    start = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "_driver.py"), str(cases_file), str(results_file)],
        env=ENV,
        cwd=REPO,
    )
    # The cases that need a process of their own run meanwhile, on the other core.
    results = {c.id: run_process(argvs[c.id]) for c in CASES if c.own_process and not c.skip}
    assert driver.wait(timeout=600) == 0, "the driver process failed"
    print(f"bad inputs: {time.perf_counter() - start:.1f} s in all")
    with open(results_file) as f:
        results.update(json.load(f))
    for case_id, result in results.items():
        print(f"  {case_id}: {result.get('seconds', 0):.2f} s")
    found = {}
    for case_id, ctx in ctxs.items():
        restore_permissions(ctx.root)
        found[case_id] = (results[case_id], before[case_id], snapshot(ctx.root), ctx)
    found["_success"] = {i: results[i] for i in success}
    found["_success_dir"] = str(base / "success")
    return found


def assert_one_clear_error(result: Dict, needles: Tuple[str, ...]) -> str:
    output = result["stdout"] + result["stderr"]
    assert result["rc"] != 0, f"exited with 0:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-5000:]
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert lines, f"nothing on stderr:\n{output[-3000:]}"
    last = lines[-1]
    assert last.startswith("error: "), f"last stderr line: {last!r}\n{output[-3000:]}"
    for needle in needles:
        assert needle in last, f"{needle!r} not in the error line {last!r}"
    return last


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly_and_leaves_output_dir_alone(case, corpus):
    if case.skip:
        pytest.skip(case.skip)
    result, before, after, ctx = corpus[case.id]
    assert_one_clear_error(result, case.needles(ctx))
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert set(changed) <= set(case.may_change), f"files changed: {changed}"
    if "out/log.txt" in case.may_change:
        with open(os.path.join(ctx.out, "log.txt")) as f:
            assert f.read().startswith(PREVIOUS_RUN["log.txt"]), "the earlier log was lost"


def test_every_case_ran_once_under_its_own_id(corpus):
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "two cases share an id: one would hide the other"
    # A result with an exit status: the process ran (the driver reports each case it ran).
    ran = {k for k, v in corpus.items() if not k.startswith("_") and isinstance(v[0]["rc"], int)}
    assert ran == {c.id for c in CASES if not c.skip}
    assert len(ran) >= len(CASES) - 1  # only the read-only case is skipped, and only as root


def test_mismatched_shapes_load_what_fits_and_report_a_table(corpus, checkpoints):
    result = corpus["_success"]["mismatched_shapes"]
    output = result["stdout"] + result["stderr"]
    assert result["rc"] == 0, output[-5000:]
    assert "NOT loaded because their shapes differ" in output
    # The table: header, then one row per skipped parameter with both shapes.
    assert "| parameter" in output and "| checkpoint" in output
    rows = [line for line in output.splitlines() if line.startswith("| head.linear.")]
    assert len(rows) == 2, output[-3000:]
    assert "(7, " in rows[0] and "(10, " in rows[0]
    # Only the head was skipped: the backbone was loaded (not listed).
    assert "| backbone." not in output


def test_resume_without_a_checkpoint_starts_from_scratch_with_a_notice(corpus):
    result = corpus["_success"]["resume_without_checkpoint"]
    output = result["stdout"] + result["stderr"]
    assert result["rc"] == 0, output[-5000:]
    assert "holds no checkpoint yet: starting from scratch" in output
    out = os.path.join(corpus["_success_dir"], "fresh")
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "log.txt")) as f:
        log = f.read()
    # The lines logged before OUTPUT_DIR was written to were kept and written to log.txt.
    assert "Running with full config" in log and "starting from scratch" in log


def test_pickle_checkpoint_loads_after_opting_in(corpus):
    result = corpus["_success"]["pickle_opt_in"]
    assert result["rc"] == 0, (result["stdout"] + result["stderr"])[-5000:]


def test_eval_only_leaves_the_training_runs_files_alone(corpus, checkpoints):
    result = corpus["_success"]["eval_only_in_a_run_dir"]
    assert result["rc"] == 0, (result["stdout"] + result["stderr"])[-5000:]
    out = os.path.join(corpus["_success_dir"], "eval_only")
    for name, text in PREVIOUS_RUN.items():
        with open(os.path.join(out, name)) as f:
            found = f.read()
        if name == "log.txt":  # the evaluation's log is appended to the run's
            assert found.startswith(text) and len(found) > len(text)
        else:
            assert found == text, f"{name} was rewritten by --eval-only"
    with (
        open(checkpoints["good"], "rb") as a,
        open(os.path.join(out, "model_0000009.pth"), "rb") as b,
    ):
        assert a.read() == b.read()
    with open(os.path.join(out, "config_eval.yaml")) as f:
        assert "MODEL:" in f.read()
    assert os.path.isdir(os.path.join(out, "inference"))


def test_overwrite_replaces_the_previous_run(corpus):
    result = corpus["_success"]["overwrite_a_previous_run"]
    output = result["stdout"] + result["stderr"]
    assert result["rc"] == 0, output[-5000:]
    assert "--overwrite: removing the previous run's last_checkpoint, metrics.json" in output
    out = os.path.join(corpus["_success_dir"], "overwrite")
    assert not os.path.exists(os.path.join(out, "model_0000009.pth"))
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    with open(os.path.join(out, "metrics.json")) as f:
        assert '"iteration": 9' not in f.read(), "the old run's metrics were kept"
    assert not os.path.exists(os.path.join(out, ".engine_lib.lock")), "the lock was not released"
