"""The docs' commands and marked snippets run as written, so the docs cannot go stale.

Every fenced shell command of ``README.md``, ``docs/*.md`` and ``projects/*/README.md`` that
runs a script of this repository (``python tools/train_net.py ...``) is run, page after page in
order, in one temporary working directory that links ``configs/``, ``tools/`` and
``projects/``: the relative ``OUTPUT_DIR`` of the shipped configs and every ``output/...`` path
of the docs land there, so a ``--resume``, an ``--eval-only MODEL.WEIGHTS output/...`` or a
``predict.py`` finds what an earlier command of the docs wrote. Each distinct command runs once.
Python blocks marked ``<!-- doc-test: runnable -->`` run there too, in document order.

What the test changes, to stay short and isolated (nothing else):

- training scripts get ``SOLVER.MAX_ITER 2`` (4 for ``--resume``, so that it trains on), or
  ``SOLVER.ITERS_PER_EPOCH 1`` when the command counts in epochs; ``TEST.EVAL_PERIOD 0`` unless
  the command sets it; for a few configs, a smaller input or test set (``_CONFIG_SHORTENERS``);
- a fresh training run (no ``--resume`` / ``--eval-only``, no input written by an earlier
  command) gets ``--overwrite``, as the docs show alternatives that share an ``OUTPUT_DIR``;
- ``--num-gpus N`` gets ``--dist-url auto`` (a free port: the machine is shared);
- ``tools/benchmark.py`` gets ``--iters 2 --warmup 1``.

A command that names a ``.yaml`` which is neither shipped (``configs/``, ``projects/*/configs/``)
nor written by an earlier command fails the test unless the page marks it (see
``tests/docs/doc_blocks.py`` for the markers): the reader can tell placeholders from real files.
"""

import json
import os
import resource
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests.docs.doc_blocks import (
    SHELL_LANGUAGES,
    Block,
    Command,
    DocTestError,
    check_labelled,
    parse_page,
    shell_commands,
)

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("doc_runner.py")
GIVENS = Path(__file__).with_name("doc_givens.py")
# Linked into the working directory, so that the docs' relative paths resolve as in a checkout.
_LINKED = ("configs", "tools", "projects")
_JOB_TIMEOUT_S = 300
_PYTHONS = ("python", "python3")

# Keys that keep a config's run short, beyond the iteration count (per shipped config).
_CONFIG_SHORTENERS: Dict[str, Dict[str, str]] = {
    # Faster R-CNN at 128x128 on the 200 test images takes minutes on 2 CPU cores.
    "projects/Detection/configs/faster_rcnn_shapes.yaml": {
        "MODEL.DETECTOR.MIN_SIZE": "64",
        "MODEL.DETECTOR.MAX_SIZE": "64",
        "SOLVER.IMS_PER_BATCH": "2",
        "DATASETS.TEST": "('shapes_mini',)",
    },
}
_FLAG_SHORTENERS: Dict[str, Dict[str, str]] = {"benchmark.py": {"--iters": "2", "--warmup": "1"}}


def doc_pages() -> List[Path]:
    """The pages whose commands are checked, in the order they run.

    ``DOC_TEST_PAGES=README.md,docs/data.md`` checks only those (while editing a page).
    """
    only = os.environ.get("DOC_TEST_PAGES", "")
    if only:
        return [REPO / p.strip() for p in only.split(",") if p.strip()]
    docs = sorted((REPO / "docs").glob("*.md"))
    projects = sorted((REPO / "projects").glob("*/README.md"))
    return [REPO / "README.md", *docs, *projects]


def _is_shipped_config(path: str) -> bool:
    parts = Path(path).parts
    shipped_dir = parts[:1] == ("configs",) or (
        len(parts) > 3 and parts[0] == "projects" and parts[2] == "configs"
    )
    return shipped_dir and not Path(path).is_absolute() and (REPO / path).is_file()


def _values(words: List[str]) -> List[str]:
    """Words and the values of ``KEY=VALUE`` words: where paths can appear."""
    return words + [w.split("=", 1)[1] for w in words if "=" in w and not w.startswith("-")]


def _named_configs(words: List[str]) -> List[str]:
    return [w for w in _values(words) if w.endswith((".yaml", ".yml"))]


def _sets_key(args: List[str], key: str) -> bool:
    return key in args or any(a.startswith(key + "=") for a in args)


def _set_key(args: List[str], key: str, value: str) -> List[str]:
    """Set a config override in a command's arguments: replace it, or add it at the end."""
    args = list(args)
    for i, a in enumerate(args):
        if a == key and i + 1 < len(args):
            args[i + 1] = value
            return args
        if a.startswith(key + "="):
            args[i] = f"{key}={value}"
            return args
    # After `--cfg-options A=1 B=2` (nargs="+") a bare `KEY VALUE` would be read as more
    # KEY=VALUE words: continue in that syntax.
    if "--cfg-options" in args and "--" not in args[args.index("--cfg-options") :]:
        return args + [f"{key}={value}"]
    return args + [key, value]


def _flag_value(args: List[str], flag: str) -> Optional[str]:
    if flag in args and args.index(flag) + 1 < len(args):
        return args[args.index(flag) + 1]
    return None


def adapt_args(script: str, args: List[str], wrote_input: bool) -> List[str]:
    """A script's arguments, shortened and isolated as the module docstring says."""
    name = os.path.basename(script)
    front: List[str] = []
    for flag, value in _FLAG_SHORTENERS.get(name, {}).items():
        if flag in args:
            args = list(args)
            args[args.index(flag) + 1] = value
        else:
            front += [flag, value]
    if name != "train_net.py":
        return front + list(args)
    resume = "--resume" in args
    if not (resume or "--eval-only" in args or wrote_input):
        front.append("--overwrite")
    gpus = _flag_value(args, "--num-gpus")
    if gpus is not None and int(gpus) > 1 and "--dist-url" not in args:
        front += ["--dist-url", "auto"]
    args = front + list(args)
    if _sets_key(args, "SOLVER.MAX_EPOCH"):
        args = _set_key(args, "SOLVER.ITERS_PER_EPOCH", "1")
    else:
        args = _set_key(args, "SOLVER.MAX_ITER", "4" if resume else "2")
    if not _sets_key(args, "TEST.EVAL_PERIOD"):
        args = _set_key(args, "TEST.EVAL_PERIOD", "0")
    for config in _named_configs(args):
        for key, value in _CONFIG_SHORTENERS.get(config, {}).items():
            args = _set_key(args, key, value)
    return args


class _Runner:
    """The fork server of ``doc_runner.py``, one JSON job at a time."""

    def __init__(self, cwd: Path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(RUNNER.parent)]))
        env["OMP_NUM_THREADS"] = "1"  # 2 shared cores: no oversubscription by spawned ranks
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
            start_new_session=True,  # to kill forked jobs and their ranks on a timeout
        )

    def run(self, job: dict) -> Tuple[int, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], _JOB_TIMEOUT_S)
        if not ready:
            self.close()
            return -1, float(_JOB_TIMEOUT_S)
        reply = json.loads(self.proc.stdout.readline() or '{"rc": -2, "seconds": 0}')
        return reply["rc"], reply["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _DocRun:
    """Runs the pages, each in a fresh working directory, and gathers what failed."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.runner: Optional[_Runner] = None  # started by the first job
        self.work = tmp
        self.failures: List[str] = []
        self.timings: List[Tuple[float, str]] = []
        self.skipped: List[str] = []
        # A fresh run met again on a later page is not run again: what it wrote is copied in.
        self.cache: Dict[Tuple[str, ...], Tuple[str, Path, List[str]]] = {}
        self._jobs = 0

    def page(self, page: Path, root: Path = REPO) -> None:
        """Check one page, in a fresh working directory: each page stands on its own."""
        try:
            blocks = parse_page(page, root)
        except DocTestError as e:
            self.failures.append(str(e))
            return
        self.work = self.tmp / "work" / page.relative_to(root).as_posix().replace("/", "__")
        self.work.mkdir(parents=True)
        for name in _LINKED:
            (self.work / name).symlink_to(REPO / name)
        for block in blocks:
            try:
                check_labelled(block)
            except DocTestError as e:
                self.failures.append(str(e))
            if block.lang in SHELL_LANGUAGES:
                self.shell_block(block)
            elif block.lang == "python":
                self.python_block(block)

    def _files(self) -> Dict[str, Tuple[int, int]]:
        """The working directory's own files (not the linked ones), with mtime and size."""
        found = {}
        for dirpath, _, filenames in os.walk(self.work):  # does not follow the links
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    st = os.stat(path)
                    found[os.path.relpath(path, self.work)] = (st.st_mtime_ns, st.st_size)
        return found

    def _run_job(self, job: dict, where: str, text: str) -> Tuple[int, str]:
        self._jobs += 1
        log = self.logs / f"{self._jobs:03d}.log"
        job = dict(job, cwd=str(self.work), log=str(log))
        if self.runner is None:
            self.runner = _Runner(self.tmp)
        rc, seconds = self.runner.run(job)
        self.timings.append((seconds, f"{where} {text}"))
        return rc, log.read_text(errors="replace") if log.exists() else ""

    def _run_cached(
        self, key: Tuple[str, ...], job: dict, where: str, text: str
    ) -> Tuple[int, str]:
        """Run a fresh run, or copy in what the same command wrote on an earlier page."""
        if key in self.cache:
            first, saved, removed = self.cache[key]
            for name in removed:
                if (self.work / name).exists():
                    os.remove(self.work / name)
            shutil.copytree(saved, self.work, symlinks=True, dirs_exist_ok=True)
            self.skipped.append(f"{where} (same command as {first}: its output copied): {text}")
            return 0, ""
        before = self._files()
        rc, log = self._run_job(job, where, text)
        after = self._files()
        saved = self.tmp / "cache" / str(len(self.cache))
        for name, stamp in after.items():
            if before.get(name) != stamp:
                (saved / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.work / name, saved / name)
        saved.mkdir(parents=True, exist_ok=True)
        if rc == 0:
            self.cache[key] = (where, saved, [n for n in before if n not in after])
        return rc, log

    def _fail(self, where: str, text: str, why: str, log: str = "") -> None:
        tail = "\n    ".join(log.strip().splitlines()[-25:])
        self.failures.append(f"{where}: {why}\n  $ {text}" + (f"\n    {tail}" if tail else ""))

    def _written_here(self, word: str) -> bool:
        """Whether a word is a relative path that an earlier command wrote (not a repo file)."""
        if not word or word.startswith("-") or os.path.isabs(word) or "/" not in word:
            return False
        return (self.work / word).exists() and not (REPO / word).exists()

    def shell_block(self, block: Block) -> None:
        try:
            commands = shell_commands(block)
        except DocTestError as e:
            self.failures.append(str(e))
            return
        self._check_markers_used(block, commands)
        for command in commands:
            self._command(block, command)

    def _check_markers_used(self, block: Block, commands: List[Command]) -> None:
        """A marker naming a token that the block does not hold is stale: say so."""
        text = " ".join(w for c in commands for w in c.argv)
        for marker in block.markers:
            tokens = {"placeholders": marker.args, "not-run-for": marker.args[:1]}
            for token in tokens.get(marker.verb, []):
                if token not in text:
                    self.failures.append(
                        f"{block.path}:{marker.line}: the doc-test marker names {token!r}, "
                        "which no command of the block below holds: remove it from the marker"
                    )

    def _skip_reason(self, block: Block, command: Command) -> Optional[str]:
        not_run = block.marker("not-run")
        if not_run:
            return "not-run: " + " ".join(not_run.args)
        words = _values(command.argv)
        for token, reason in block.not_run_for():
            if any(token in w for w in words):
                return f"not-run-for {token}: {reason}"
        for token in block.placeholders():
            if any(token in w for w in words):
                return f"placeholder {token}"
        return None

    def _command(self, block: Block, command: Command) -> None:
        where = f"{block.path}:{command.line}"
        reason = self._skip_reason(block, command)
        if reason:
            self.skipped.append(f"{where} ({reason}): {command.text}")
            return
        argv = command.argv
        configs = _named_configs(argv)
        for config in configs:
            if not (_is_shipped_config(config) or (self.work / config).is_file()):
                self._fail(
                    where,
                    command.text,
                    f"names {config!r}, which is neither a shipped config (configs/, "
                    "projects/*/configs/) nor a file an earlier command of the docs wrote: fix "
                    f"the path, or mark the block with <!-- doc-test: placeholders {config} -->",
                )
                return
        is_script = (
            len(argv) >= 2
            and argv[0] in _PYTHONS
            and argv[1].endswith(".py")
            and (REPO / argv[1]).is_file()
        )
        if not is_script:
            if configs:
                self._fail(
                    where,
                    command.text,
                    "names a config but is not `python SCRIPT ...` of this repository, so "
                    "the test cannot run it: mark the block <!-- doc-test: not-run REASON -->",
                )
            return
        wrote_input = any(self._written_here(w) for w in _values(argv[2:]))
        args = adapt_args(argv[1], argv[2:], wrote_input)
        job = {"kind": "script", "argv": [argv[1], *args], "env": command.env}
        text = shlex.join(argv[1:])
        fresh = not (wrote_input or "--resume" in args or "--eval-only" in args)
        if fresh and not block.marker("expect-error"):
            key = (*(f"{k}={v}" for k, v in sorted(command.env.items())), *argv)
            rc, log = self._run_cached(key, job, where, text)
        else:
            rc, log = self._run_job(job, where, text)
        if block.marker("expect-error"):
            if rc == 0:
                self._fail(where, command.text, "the docs show an error, but it exits 0", log)
            for line in command.output:
                if line.strip() not in log:
                    self._fail(where, command.text, f"the output shown is not printed: {line}", log)
        elif rc != 0:
            ran = shlex.join(["python", argv[1], *args])
            self._fail(where, command.text, f"exit code {rc} (ran: {ran})", log)

    def python_block(self, block: Block) -> None:
        marker = block.marker("runnable")
        if marker is None:
            return
        options = dict(a.split("=", 1) for a in marker.args if "=" in a)
        given = [g for g in options.get("given", "").split(",") if g]
        prelude = ""
        if given:
            # On one line, so that the snippet's line numbers in a traceback stay its own.
            prelude = (
                "import importlib.util as _u; _s = _u.spec_from_file_location('doc_givens', "
                f"{str(GIVENS)!r}); _m = _u.module_from_spec(_s); _s.loader.exec_module(_m); "
                + "; ".join(f"{g} = _m.{g}" for g in given)
                + "\n"
            )
        argv = shlex.split(options.get("argv", ""))
        if argv:
            argv = adapt_args("train_net.py", argv, wrote_input=False)
        where = block.where()
        job = {
            "kind": "code",
            "code": prelude + "\n".join(block.lines) + "\n",
            "filename": where,
            "argv": [where, *argv],
        }
        rc, log = self._run_job(job, where, "<python block>")
        if rc != 0:
            self._fail(where, "<python block>", f"the snippet exits with {rc}", log)


def test_unbalanced_quotes_name_the_file_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Intro\n\n```bash\npython t.py \\\n    --config-file 'a.yaml\n```\n")
    (block,) = parse_page(page, tmp_path)
    with pytest.raises(DocTestError, match=r"^page\.md:4: cannot split .*unbalanced quotes"):
        shell_commands(block)


def test_commands_split_on_chains_continuations_comments_and_prompts(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "<!-- doc-test: placeholders my.yaml -->\n"
        "```bash\n"
        "pip install -e . && python t.py --config-file my.yaml \\\n"
        "    A.B \"('x', 'y')\"   # it's a comment\n"
        "X=1 python u.py; echo $?\n"
        "```\n"
        "<!-- doc-test: expect-error -->\n"
        "```console\n"
        "$ python v.py\n"
        "error: bad\n"
        "```\n"
    )
    shell, console = parse_page(page, tmp_path)
    assert shell.placeholders() == ["my.yaml"]
    argvs = [(c.argv, c.env, c.line) for c in shell_commands(shell)]
    assert argvs == [
        (["pip", "install", "-e", "."], {}, 3),
        (["python", "t.py", "--config-file", "my.yaml", "A.B", "('x', 'y')"], {}, 3),
        (["python", "u.py"], {"X": "1"}, 5),
        (["echo", "$?"], {}, 5),
    ]
    (command,) = shell_commands(console)
    assert command.argv == ["python", "v.py"] and command.output == ["error: bad"]
    assert console.marker("expect-error") is not None


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- doc-test: placeholder X.yaml -->\n```bash\nls\n```\n", "unknown doc-test marker"),
        ("<!-- doc-test: runnable -->\n\n```python\npass\n```\n", "right above a code fence"),
        ("```bash\nls\n", "never closed"),
    ],
)
def test_pages_the_test_cannot_read_fail_with_file_and_line(tmp_path, text, message):
    page = tmp_path / "p.md"
    page.write_text(text)
    with pytest.raises(DocTestError, match=rf"^p\.md:\d+: .*{message}"):
        parse_page(page, tmp_path)


def test_an_unlabelled_block_of_commands_is_refused(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("Run:\n\n```\npython tools/train_net.py --config-file c.yaml\n```\n")
    (block,) = parse_page(page, tmp_path)
    with pytest.raises(DocTestError, match=r"^p\.md:4: an unlabelled code block holds commands"):
        check_labelled(block)


def test_an_unmarked_missing_config_and_a_stale_marker_fail(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "```bash\n"
        "python tools/train_net.py --config-file configs/Digits/X.yaml\n"
        "```\n"
        "<!-- doc-test: placeholders my.yaml -->\n"
        "```bash\n"
        "python tools/train_net.py --config-file my.yaml\n"
        "```\n"
        "<!-- doc-test: placeholders my_set -->\n"
        "```bash\n"
        "torchrun tools/train_net.py --config-file configs/Digits/cnn.yaml\n"
        "```\n"
    )
    run = _DocRun(tmp_path)
    run.page(page, tmp_path)
    assert run.runner is None  # nothing here was runnable
    missing, stale, not_python = run.failures
    assert missing.startswith("p.md:2: names 'configs/Digits/X.yaml', which is neither a shipped")
    assert stale.startswith("p.md:8: the doc-test marker names 'my_set'")
    assert not_python.startswith("p.md:10: names a config but is not `python SCRIPT ...`")
    assert run.skipped == [
        "p.md:6 (placeholder my.yaml): python tools/train_net.py --config-file my.yaml"
    ]


def test_shortening_keeps_the_command_and_its_syntax():
    train = "tools/train_net.py"
    assert adapt_args(train, ["--config-file", "c.yaml", "SOLVER.MAX_ITER", "800"], False) == [
        "--overwrite",
        "--config-file",
        "c.yaml",
        "SOLVER.MAX_ITER",
        "2",
        "TEST.EVAL_PERIOD",
        "0",
    ]
    cfg_options = adapt_args(train, ["--resume", "--cfg-options", "SOLVER.MAX_ITER=300"], False)
    assert cfg_options == ["--resume", "--cfg-options", "SOLVER.MAX_ITER=4", "TEST.EVAL_PERIOD=0"]
    epochs = adapt_args(train, ["--num-gpus", "2", "SOLVER.MAX_EPOCH", "20"], True)
    assert epochs[:2] == ["--dist-url", "auto"] and "SOLVER.MAX_ITER" not in epochs
    assert epochs[-4:] == ["SOLVER.ITERS_PER_EPOCH", "1", "TEST.EVAL_PERIOD", "0"]
    assert adapt_args("tools/benchmark.py", ["--iters", "50"], False) == [
        "--warmup",
        "1",
        "--iters",
        "2",
    ]


def test_doc_commands_and_runnable_snippets_run(tmp_path):
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    run = _DocRun(tmp_path)
    try:
        for page in doc_pages():
            run.page(page)
    finally:
        if run.runner is not None:
            run.runner.close()
    total = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    slowest = sorted(run.timings, reverse=True)[:8]
    cpu = children.ru_utime + children.ru_stime - cpu_before
    print(
        f"\n{len(run.timings)} doc commands/snippets in {total:.1f} s ({cpu:.0f} s CPU); slowest:"
    )
    for seconds, what in slowest:
        print(f"  {seconds:6.1f} s  {what}")
    print(f"{len(run.skipped)} not run:\n  " + "\n  ".join(run.skipped))
    assert not run.failures, f"{len(run.failures)} doc command(s) fail:\n" + "\n".join(run.failures)
