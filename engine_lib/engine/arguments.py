"""``default_argument_parser``: the command line shared by the training and evaluation tools.

Besides detectron2's flags it accepts mmdetection's habits: ``--launcher``, ``--local-rank``,
``--work-dir`` and ``--cfg-options KEY=VALUE``. Flags that stand for config keys
(``--work-dir``, ``--cfg-options``, ``--deterministic``) are folded into ``args.opts`` while
parsing, so every script that merges ``args.opts`` into its config honours them.
"""

import argparse
import ast
import os
import re
import sys
from typing import Any, List, NoReturn, Optional, Sequence, Tuple
from urllib.parse import urlparse

from engine_lib.engine.launch.backends import backend_named, is_local_host, launcher_flags
from engine_lib.utils.errors import ConfigError

__all__ = [
    "default_argument_parser",
    "validate_launch_args",
    "fold_config_flags",
    "default_dist_url",
]

# An upper-case dotted name such as SOLVER.BASE_LR or OUTPUT_DIR: a config key, not a path.
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*")

# Default rendezvous ports lie in [_PORT_BASE, _PORT_BASE + _PORT_SPAN): below Linux's
# ephemeral range (32768+), where outgoing connections could already hold a port.
_PORT_BASE = 10000
_PORT_SPAN = 20000


def default_dist_url() -> str:
    """Return the default ``--dist-url``: localhost, on a port derived from the user id.

    Two users on one host get different ports, so their jobs do not collide; two jobs of
    one user do, and the second then asks for ``--dist-url auto``.

    Returns:
        str: ``tcp://127.0.0.1:PORT``.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return f"tcp://127.0.0.1:{_PORT_BASE + uid % _PORT_SPAN}"


def _default_epilog(prog: str) -> str:
    return f"""Examples:

Train on 8 GPUs of one machine:
    $ {prog} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {prog} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Continue from the newest checkpoint in OUTPUT_DIR, or from a given one:
    $ {prog} --config-file cfg.yaml --resume
    $ {prog} --config-file cfg.yaml --resume output/model_0004999.pth

Start again from scratch in an OUTPUT_DIR that holds a previous run (removes its checkpoints):
    $ {prog} --config-file cfg.yaml --overwrite

Run on two machines (the same --dist-url, the address of machine 0, on both):
    (machine 0)$ {prog} --machine-rank 0 --num-machines 2 --dist-url tcp://10.0.0.1:29500 ...
    (machine 1)$ {prog} --machine-rank 1 --num-machines 2 --dist-url tcp://10.0.0.1:29500 ...

Under torchrun or srun, the flags above are read from the environment instead:
    $ torchrun --nproc-per-node 8 {prog} --config-file cfg.yaml

Under Open MPI (rank 0's address in MASTER_ADDR/MASTER_PORT or --dist-url):
    $ mpirun -np 8 {prog} --launcher mpi --dist-url tcp://10.0.0.1:29500 --config-file cfg.yaml

mmdetection-style flags: output directory, KEY=VALUE overrides, repeatable run:
    $ {prog} --config-file cfg.yaml --work-dir runs/a --cfg-options SOLVER.BASE_LR=0.01 SEED=7
    $ {prog} --config-file cfg.yaml --deterministic SEED 42
"""


class _ValidatingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that checks the launch flags as part of parsing."""

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> Tuple[argparse.Namespace, List[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        try:
            validate_launch_args(parsed)
            fold_config_flags(parsed)
        except ConfigError as e:
            self.error(str(e))
        if getattr(parsed, "launcher", None) is not None:
            # The one place --launcher's spelling (mmengine's "pytorch") becomes the name
            # the code uses ("torchrun").
            parsed.launcher = backend_named(parsed.launcher).name
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``error: <message>`` as the last line, then exit with 2.

        argparse would end with ``<prog>: error: ...``; every user error of the tools ends
        with a line starting ``error: `` (see :func:`~engine_lib.engine.cli.run_cli`).
        """
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Create the parser of the common command line of training and evaluation scripts.

    Flags: ``--config-file FILE``; ``--resume [PATH]``; ``--eval-only``; ``--overwrite``
    (a fresh run may replace a previous run in ``OUTPUT_DIR``); ``--num-gpus N``
    (default 1); ``--num-machines N`` (default 1); ``--machine-rank R`` (default 0);
    ``--dist-url URL`` (default :func:`default_dist_url`; ``auto`` picks a free port, one
    machine only); ``--dist-timeout SECONDS`` (``launch``'s ``timeout``; default None:
    ``launch``'s, 5 minutes); ``--launcher {none,pytorch,slurm,mpi}`` (default: detect torchrun and
    srun); ``--local-rank N`` / ``--local_rank N`` (passed by ``torch.distributed.launch``);
    ``--work-dir DIR`` (``OUTPUT_DIR``); ``--deterministic`` (``DETERMINISTIC True``);
    ``--cfg-options KEY=VALUE ...``; then ``opts``: config overrides as ``KEY VALUE`` pairs.

    ``--work-dir``, ``--deterministic`` and ``--cfg-options`` end up in ``args.opts`` (see
    :func:`fold_config_flags`); ``--cfg-options`` takes every ``KEY=VALUE`` word up to the
    next flag, so trailing ``KEY VALUE`` pairs go before it, or after a ``--``.

    ``args.resume`` is ``False`` without the flag, ``True`` for ``--resume`` alone (continue
    from the checkpoint named in ``OUTPUT_DIR/last_checkpoint``) and a ``str`` for
    ``--resume PATH`` (continue from that checkpoint). A word after ``--resume`` that looks
    like a config key (``SOLVER.BASE_LR``) starts the overrides instead of being the path.

    ``args.launcher`` holds the launcher's one name: ``--launcher pytorch`` gives ``"torchrun"``.
    Parsing runs :func:`validate_launch_args` then :func:`fold_config_flags` on the parsed
    flags (building and checking are separate steps); a mistake exits with a usage message.

    Args:
        epilog (str, optional): text after the help; default: example command lines.

    Returns:
        argparse.ArgumentParser: the parser; scripts may add their own arguments.
    """
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "train_net.py"
    parser = _ValidatingParser(
        epilog=_default_epilog(prog) if epilog is None else epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_flags(parser)
    _add_launch_flags(parser)
    _add_config_flags(parser)
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--config-file``, ``--resume [PATH]``, ``--eval-only``, ``--overwrite``: the run."""
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue training: alone, from OUTPUT_DIR/last_checkpoint; with PATH, from that "
        "checkpoint (model, optimizer, schedule, iteration, RNG states)",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a fresh run even though OUTPUT_DIR holds a previous run's checkpoints or "
        "metrics.json, which are then removed (without it such a run is refused)",
    )


def _add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """Where the processes run: detectron2's layout flags, ``--launcher``, ``--local-rank``."""
    parser.add_argument(
        "--num-gpus", type=int, default=1, help="processes per machine (one per GPU, or CPU)"
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    parser.add_argument(
        "--dist-url",
        default=default_dist_url(),
        help="tcp://HOST:PORT of machine 0 (the same on every machine), or 'auto' for a free "
        "port on a single machine. Default: localhost, on a port derived from your user id.",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a collective waits for the other processes before the job fails "
        "(a stopped or hung worker); one machine's rendezvous waits at most 60 s of it. "
        "Default: 300",
    )
    parser.add_argument(
        "--launcher",
        choices=launcher_flags(),
        default=None,
        help="who started the processes, instead of detecting torchrun/srun from the "
        "environment: none (ignore launcher variables, spawn --num-gpus processes), pytorch "
        "(torchrun), slurm (srun), mpi (Open MPI's mpirun)",
    )
    parser.add_argument(
        "--local-rank",
        "--local_rank",
        dest="local_rank",
        type=int,
        default=None,
        help="local rank of this process, as passed by torch.distributed.launch",
    )


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """The three override syntaxes: mmdetection's flags, and trailing ``KEY VALUE`` pairs."""
    parser.add_argument(
        "--work-dir",
        default=None,
        metavar="DIR",
        help="directory of logs, checkpoints and config.yaml: the same as OUTPUT_DIR DIR",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic cuDNN/cuBLAS/torch kernels: the same as DETERMINISTIC True",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides in mmdetection's syntax, e.g. SOLVER.BASE_LR=0.02 "
        "MODEL.DEVICE=cpu; values are read like the trailing KEY VALUE pairs",
    )
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs at the end of the command, "
        "e.g. SOLVER.BASE_LR 0.02 MODEL.DEVICE cpu",
    )


def validate_launch_args(args: argparse.Namespace) -> None:
    """Check the launch flags and overrides of a parsed command line.

    Also moves a config key swallowed by ``--resume`` back to the front of ``args.opts``.

    Args:
        args (argparse.Namespace): the result of :func:`default_argument_parser`'s parsing.

    Raises:
        ConfigError: naming the flag and what was expected, e.g. a ``--machine-rank`` outside
            ``[0, --num-machines)``, ``--num-gpus`` below 1, several machines with a localhost
            or ``auto`` ``--dist-url``, or overrides that are not ``KEY VALUE`` pairs.
    """
    _take_key_back_from_resume(args)
    _validate_layout(args)
    _validate_dist_url(args.dist_url, args.num_machines)
    _validate_local_rank(args)
    _split_cfg_options_from_opts(args)
    _validate_opts(args.opts)
    _cfg_option_pairs(getattr(args, "cfg_options", []))


def _take_key_back_from_resume(args: argparse.Namespace) -> None:
    resume = args.resume
    if isinstance(resume, str) and _CONFIG_KEY.fullmatch(resume) and not os.path.exists(resume):
        # "--resume SOLVER.BASE_LR 0.1": the key is an override, not a checkpoint path.
        args.opts = [args.resume, *args.opts]
        args.resume = True


def _validate_layout(args: argparse.Namespace) -> None:
    if args.num_gpus < 1:
        raise ConfigError(f"--num-gpus must be at least 1, got {args.num_gpus}.")
    if args.num_machines < 1:
        raise ConfigError(f"--num-machines must be at least 1, got {args.num_machines}.")
    if not 0 <= args.machine_rank < args.num_machines:
        raise ConfigError(
            f"--machine-rank {args.machine_rank} is out of range for --num-machines "
            f"{args.num_machines}: expected 0 to {args.num_machines - 1}."
        )
    timeout = getattr(args, "dist_timeout", None)
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--dist-timeout must be a number of seconds above 0, got {timeout}.")


def _validate_local_rank(args: argparse.Namespace) -> None:
    local_rank = getattr(args, "local_rank", None)
    if local_rank is not None and local_rank < 0:
        raise ConfigError(f"--local-rank must be at least 0, got {local_rank}.")


def fold_config_flags(args: argparse.Namespace) -> None:
    """Turn the flags that stand for config keys into ``KEY VALUE`` pairs of ``args.opts``.

    ``--work-dir DIR`` becomes ``OUTPUT_DIR DIR``, ``--deterministic`` ``DETERMINISTIC True``
    and each ``--cfg-options KEY=VALUE`` ``KEY VALUE``; they go before the trailing pairs,
    which are merged last. Calling it again adds nothing.

    Args:
        args (argparse.Namespace): a command line checked by :func:`validate_launch_args`.

    Raises:
        ConfigError: a key is given different values by two of these forms (e.g.
            ``--work-dir a`` and ``OUTPUT_DIR b``), or a ``--cfg-options`` item is not
            ``KEY=VALUE``.
    """
    pairs: List[Tuple[str, str, str]] = []  # (key, value, where it came from)
    if getattr(args, "work_dir", None):
        pairs.append(("OUTPUT_DIR", args.work_dir, f"--work-dir {args.work_dir}"))
    if getattr(args, "deterministic", False):
        pairs.append(("DETERMINISTIC", "True", "--deterministic"))
    for key, value in _cfg_option_pairs(getattr(args, "cfg_options", [])):
        pairs.append((key, value, f"--cfg-options {key}={value}"))
    given = {}  # key -> (value, where): what opts and earlier flags say
    for key, value in zip(args.opts[0::2], args.opts[1::2]):
        given[key] = (value, f"{key} {value}")
    folded: List[str] = []
    for key, value, where in pairs:
        if key in given:
            if not _same_value(key, given[key][0], value):
                raise ConfigError(
                    f"{where} contradicts {given[key][1]}: give {key} one value, in one form."
                )
            continue  # already in opts: folding twice adds nothing
        given[key] = (value, where)
        folded += [key, value]
    args.opts = folded + list(args.opts)


def _same_value(key: str, a: str, b: str) -> bool:
    if key == "OUTPUT_DIR":
        return os.path.normpath(a) == os.path.normpath(b)
    return _literal(a) == _literal(b)


def _literal(value: str) -> Any:
    # As yacs reads override values: a Python literal where it is one, else the string.
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _split_cfg_options_from_opts(args: argparse.Namespace) -> None:
    """Recover ``--cfg-options`` written after trailing pairs, and pairs after ``-- ``.

    argparse hands everything from the first ``KEY`` on to ``opts``, so in
    ``SOLVER.BASE_LR 0.1 --cfg-options A=1`` the flag and its items sit in ``opts``; and in
    ``--cfg-options A=1 -- KEY VALUE`` the ``--`` that ends the items leads ``opts``.
    """
    opts = list(args.opts)
    if opts[:1] == ["--"]:
        opts = opts[1:]
    if "--cfg-options" in opts[0::2]:
        at = 2 * opts[0::2].index("--cfg-options")
        args.cfg_options = [*getattr(args, "cfg_options", []), *opts[at + 1 :]]
        opts = opts[:at]
    args.opts = opts


def _cfg_option_pairs(items: Sequence[str]) -> List[Tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--cfg-options item {item!r} is not KEY=VALUE (e.g. SOLVER.BASE_LR=0.01). "
                "To give KEY VALUE pairs after --cfg-options, separate them with --: "
                "--cfg-options A=1 -- KEY VALUE."
            )
        pairs.append((key, value))
    return pairs


def _validate_dist_url(url: str, num_machines: int) -> None:
    if url == "auto":
        if num_machines > 1:
            raise ConfigError(
                f"--dist-url auto picks a port on this machine and cannot be used with "
                f"--num-machines {num_machines}: pass tcp://HOST:PORT of machine 0."
            )
        return
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        return
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "tcp" or not parsed.hostname or port is None or not 0 < port < 65536:
        raise ConfigError(
            f"--dist-url {url!r} is not valid: expected tcp://HOST:PORT (a port in 1-65535), "
            "file:///shared/path, or auto."
        )
    if num_machines > 1 and url == default_dist_url():
        raise ConfigError(
            f"--num-machines {num_machines} needs --dist-url tcp://HOST:PORT of machine 0, "
            "reachable from every machine and the same on every machine."
        )
    if num_machines > 1 and is_local_host(parsed.hostname):
        raise ConfigError(
            f"--dist-url {url} points to this machine, but --num-machines is {num_machines}: "
            "pass the address of machine 0 that every machine can reach, e.g. "
            "tcp://10.0.0.1:29500, the same on every machine."
        )


def _validate_opts(opts: List[str]) -> None:
    keys = opts[0::2]
    for key in keys:
        if key.startswith("--"):
            raise ConfigError(
                f"{key} after the config overrides is read as a config key: put the flags "
                "before the KEY VALUE pairs."
            )
    if len(opts) % 2 == 1:
        raise ConfigError(
            f"Config overrides must be KEY VALUE pairs, but {opts[-1]!r} has no value "
            f"(overrides: {' '.join(opts)})."
        )
