"""``default_argument_parser``: the command line shared by the training and evaluation tools."""

import argparse
import os
import re
import sys
from typing import List, NoReturn, Optional, Sequence, Tuple
from urllib.parse import urlparse

from engine_lib.utils.errors import ConfigError

__all__ = ["default_argument_parser", "validate_launch_args", "default_dist_url"]

# A config key such as SOLVER.BASE_LR: upper-case names joined by dots.
# An upper-case dotted name such as SOLVER.BASE_LR or OUTPUT_DIR: a config key, not a path.
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")

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

Run on two machines (the same --dist-url, the address of machine 0, on both):
    (machine 0)$ {prog} --machine-rank 0 --num-machines 2 --dist-url tcp://10.0.0.1:29500 ...
    (machine 1)$ {prog} --machine-rank 1 --num-machines 2 --dist-url tcp://10.0.0.1:29500 ...

Under torchrun or srun, the flags above are read from the environment instead.
"""


class _ValidatingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that checks the launch flags as part of parsing."""

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> Tuple[argparse.Namespace, List[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        try:
            validate_launch_args(parsed)
        except ConfigError as e:
            self.error(str(e))
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

    Flags: ``--config-file FILE``; ``--resume [PATH]``; ``--eval-only``; ``--num-gpus N``
    (default 1); ``--num-machines N`` (default 1); ``--machine-rank R`` (default 0);
    ``--dist-url URL`` (default :func:`default_dist_url`; ``auto`` picks a free port, one
    machine only); then ``opts``: config overrides as ``KEY VALUE`` pairs.

    ``args.resume`` is ``False`` without the flag, ``True`` for ``--resume`` alone (continue
    from the checkpoint named in ``OUTPUT_DIR/last_checkpoint``) and a ``str`` for
    ``--resume PATH`` (continue from that checkpoint). A word after ``--resume`` that looks
    like a config key (``SOLVER.BASE_LR``) starts the overrides instead of being the path.

    Parsing also runs :func:`validate_launch_args`; a mistake exits with a usage message.

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
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs at the end of the command, "
        "e.g. SOLVER.BASE_LR 0.02 MODEL.DEVICE cpu",
    )
    return parser


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
    resume = args.resume
    if isinstance(resume, str) and _CONFIG_KEY.fullmatch(resume) and not os.path.exists(resume):
        # "--resume SOLVER.BASE_LR 0.1": the key is an override, not a checkpoint path.
        args.opts = [args.resume, *args.opts]
        args.resume = True
    if args.num_gpus < 1:
        raise ConfigError(f"--num-gpus must be at least 1, got {args.num_gpus}.")
    if args.num_machines < 1:
        raise ConfigError(f"--num-machines must be at least 1, got {args.num_machines}.")
    if not 0 <= args.machine_rank < args.num_machines:
        raise ConfigError(
            f"--machine-rank {args.machine_rank} is out of range for --num-machines "
            f"{args.num_machines}: expected 0 to {args.num_machines - 1}."
        )
    _validate_dist_url(args.dist_url, args.num_machines)
    _validate_opts(args.opts)


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
    if num_machines > 1 and (parsed.hostname in _LOCAL_HOSTS or parsed.hostname.startswith("127.")):
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
