"""Fenced code blocks of the Markdown docs, their ``doc-test`` markers and their shell commands.

``tests/docs/test_doc_commands.py`` runs what the docs tell a reader to type; this module only
reads the pages. A marker is an HTML comment on the line(s) right before a fence, invisible in
the rendered page::

    <!-- doc-test: placeholders X.yaml my_set -->   commands naming these tokens are the
                                                   reader's own (not run)
    <!-- doc-test: not-run REASON -->               no command of the block runs (multi-machine,
                                                   SLURM, a GPU, ...)
    <!-- doc-test: not-run-for TOKEN REASON -->     commands naming TOKEN do not run
    <!-- doc-test: expect-error -->                 (console block) the command fails, and each
                                                   output line shown is in its output
    <!-- doc-test: runnable [given=A,B] [argv="--config-file ..."] -->
                                                   (python block) run it; ``given`` names come
                                                   from ``tests/docs/doc_givens.py``, ``argv``
                                                   is the snippet's command line
"""

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Tuple

__all__ = [
    "SHELL_LANGUAGES",
    "Block",
    "Command",
    "DocTestError",
    "Marker",
    "check_labelled",
    "parse_page",
    "shell_commands",
]

SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
MARKER_VERBS = ("placeholders", "not-run", "not-run-for", "expect-error", "runnable")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
# Lines of an unlabelled block that are commands a reader would type: such a block must say its
# language, or the test would silently skip it.
_COMMAND_LIKE = re.compile(r"^\s*(\$ )?(python3?|torchrun|srun|mpirun|pip) \S")
_SEPARATORS = {"&&", "||", ";", "|", "&", ";;"}


class DocTestError(ValueError):
    """A page that the doc test cannot read as written; the message names ``file:line``."""


@dataclasses.dataclass
class Marker:
    """One ``<!-- doc-test: VERB ARGS -->`` comment.

    Attributes:
        verb (str): one of ``MARKER_VERBS``.
        args (list[str]): the words after the verb (shlex-split).
        line (int): its 1-based line number.
    """

    verb: str
    args: List[str]
    line: int


@dataclasses.dataclass
class Block:
    """A fenced code block.

    Attributes:
        path (str): the page, relative to the repository root.
        line (int): 1-based line of the opening fence.
        lang (str): the info string's first word ("" when unlabelled).
        lines (list[str]): the block's lines, without the fences.
        markers (list[Marker]): the markers right above the fence.
    """

    path: str
    line: int
    lang: str
    lines: List[str]
    markers: List[Marker]

    def where(self, offset: int = 0) -> str:
        """``path:line`` of the block's ``offset``-th line (0 = the first line inside)."""
        return f"{self.path}:{self.line + 1 + offset}"

    def marker(self, verb: str) -> Optional[Marker]:
        """The block's marker with this verb, or None."""
        return next((m for m in self.markers if m.verb == verb), None)

    def placeholders(self) -> List[str]:
        """Tokens that stand for the reader's own files or names."""
        return [a for m in self.markers if m.verb == "placeholders" for a in m.args]

    def not_run_for(self) -> List[Tuple[str, str]]:
        """``(token, reason)`` of each ``not-run-for`` marker."""
        return [(m.args[0], " ".join(m.args[1:])) for m in self.markers if m.verb == "not-run-for"]


@dataclasses.dataclass
class Command:
    """One simple command of a shell block.

    Attributes:
        argv (list[str]): its words, quotes removed, without leading ``VAR=value`` words.
        env (dict[str, str]): leading ``VAR=value`` assignments.
        text (str): the logical line it came from (continuations joined).
        line (int): 1-based line where that logical line starts.
        output (list[str]): for a console block, the output lines shown after it.
    """

    argv: List[str]
    env: Dict[str, str]
    text: str
    line: int
    output: List[str] = dataclasses.field(default_factory=list)


def _parse_marker(body: str, path: str, line: int) -> Marker:
    try:
        words = shlex.split(body)
    except ValueError as e:
        raise DocTestError(f"{path}:{line}: cannot read the doc-test marker {body!r}: {e}") from e
    if not words or words[0] not in MARKER_VERBS:
        raise DocTestError(
            f"{path}:{line}: unknown doc-test marker {body!r}; expected one of "
            f"{', '.join(MARKER_VERBS)}"
        )
    verb, args = words[0], words[1:]
    if verb in ("placeholders", "not-run", "not-run-for") and not args:
        raise DocTestError(f"{path}:{line}: the doc-test marker '{verb}' needs arguments")
    if verb == "not-run-for" and len(args) < 2:
        raise DocTestError(f"{path}:{line}: 'not-run-for' needs a TOKEN and a REASON")
    return Marker(verb, args, line)


def _misplaced(path: str, marker: Marker) -> DocTestError:
    return DocTestError(f"{path}:{marker.line}: a doc-test marker must be right above a code fence")


def parse_page(path: Path, root: Path) -> List[Block]:
    """Read the fenced code blocks of one Markdown page, with their markers.

    Args:
        path (Path): the page.
        root (Path): the repository root (block paths are relative to it).

    Returns:
        list[Block]: in page order.

    Raises:
        DocTestError: a marker not followed by a fence, an unknown marker, or an unclosed
            fence.
    """
    rel = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: List[Block] = []
    pending: List[Marker] = []
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        fence = _FENCE.match(lines[i])
        if marker:
            pending.append(_parse_marker(marker.group("body"), rel, i + 1))
            i += 1
            continue
        if not fence:
            if pending and lines[i].strip():
                raise _misplaced(rel, pending[0])
            i += 1
            continue
        if pending and lines[i - 1].strip() == "":
            raise _misplaced(rel, pending[0])
        close = fence.group("fence")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(close):
            end += 1
        if end == len(lines):
            raise DocTestError(f"{rel}:{i + 1}: the code fence is never closed")
        blocks.append(Block(rel, i + 1, fence.group("lang").lower(), lines[i + 1 : end], pending))
        pending = []
        i = end + 1
    if pending:
        raise _misplaced(rel, pending[0])
    return blocks


def check_labelled(block: Block) -> None:
    """Refuse an unlabelled block that holds commands: the test would skip it silently.

    Raises:
        DocTestError: naming the block's ``file:line``.
    """
    if block.lang == "" and any(_COMMAND_LIKE.match(x) for x in block.lines):
        raise DocTestError(
            f"{block.where()}: an unlabelled code block holds commands; label it "
            "```bash (or ```console with '$ ' prompts) so that the doc test runs them, or "
            "```text if it is not meant to be typed"
        )


def _logical_lines(block: Block) -> List[Tuple[int, str, List[str]]]:
    """Join ``\\``-continued lines: ``(offset of the first line, text, output lines)``.

    In a console block only ``$ ``-prompted lines (and their continuations) are commands; the
    lines up to the next prompt are that command's output.
    """
    out: List[Tuple[int, str, List[str]]] = []
    console = block.lang == "console"
    i = 0
    while i < len(block.lines):
        raw = block.lines[i]
        if console:
            if not raw.startswith("$ "):
                if out and raw.strip():
                    out[-1][2].append(raw)
                i += 1
                continue
            raw = raw[2:]
        start, text = i, raw
        while text.endswith("\\") and i + 1 < len(block.lines):
            i += 1
            text = text[:-1] + " " + block.lines[i].strip()
        out.append((start, text, []))
        i += 1
    return out


def shell_commands(block: Block) -> List[Command]:
    """Split a shell or console block into simple commands.

    Comments go, ``\\`` continuations are joined, ``&&`` / ``||`` / ``;`` / ``|`` chains are
    split into their commands, leading ``VAR=value`` words become the command's environment.

    Args:
        block (Block): a block whose language is in ``SHELL_LANGUAGES``.

    Returns:
        list[Command]: in order.

    Raises:
        DocTestError: naming ``file:line`` when a line cannot be split (unbalanced quotes).
    """
    commands: List[Command] = []
    for offset, text, output in _logical_lines(block):
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError as e:
            raise DocTestError(
                f"{block.where(offset)}: cannot split this shell command ({e}; unbalanced "
                f"quotes?): {text.strip()}"
            ) from e
        current: List[str] = []
        for word in words + [";"]:
            if word not in _SEPARATORS:
                current.append(word)
                continue
            env: Dict[str, str] = {}
            while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                key, _, value = current.pop(0).partition("=")
                env[key] = value
            if current:
                commands.append(Command(current, env, text.strip(), block.line + 1 + offset))
            current = []
        if commands and output:
            commands[-1].output = output
    return commands
