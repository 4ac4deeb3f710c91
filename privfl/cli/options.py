"""What every ``privfl`` subcommand shares: a parser whose errors are one line, a help
formatter, and argument types that refuse bad values and unusable paths before any work.

Each type raises :class:`argparse.ArgumentTypeError`, which the parser reports as
``privfl demo: error: argument --plot: ...`` and exit status 2. Path types create
nothing: they only check that the file could be written where it is asked for.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
"""File types matplotlib writes that privfl's plots accept."""

_RST_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]+\.)?([\w]+)`")  # :class:`~privfl.x.Name` -> Name
_RST_LITERAL = re.compile(r"``([^`]+)``")


class Parser(argparse.ArgumentParser):
    """An argument parser that reports a usage error in one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Plain-text help: RST markup removed, paragraphs refilled, indented lines kept as they are,
    and a default shown once (not when the help text already states it, nor when it is None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(_fill(plain_text(text), width, indent))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain_text(text), width)


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup (double backticks, ``:class:`` roles)."""
    return _RST_LITERAL.sub(r"\1", _RST_ROLE.sub(r"\1", text))


def _fill(text: str, width: int, indent: str) -> list[str]:
    """Refill runs of unindented lines; keep indented lines (examples) and blank lines."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.extend(textwrap.wrap(" ".join(run), width, initial_indent=indent, subsequent_indent=indent))
            run.clear()

    for line in textwrap.dedent(text).strip("\n").splitlines():
        if line.strip() and not line.startswith(" "):
            run.append(line.strip())
            continue
        flush()
        out.append(indent + line if line.strip() else "")
    flush()
    return out


def _number(text: str, kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Any:
    """``kind(text)`` if it parses and passes ``ok``; else a usage error saying it must be ``what``."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """Argument type: an integer >= ``low``."""

    def parse(text: str) -> int:
        return _number(text, int, f"an integer >= {low}", lambda v: v >= low)

    parse.__name__ = f"integer >= {low}"
    return parse


def positive_float(text: str) -> float:
    """Argument type: a finite float > 0."""
    return _number(text, float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0)


def probability(text: str) -> float:
    """Argument type: a float in [0, 1]."""
    return _number(text, float, "a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0)  # also false for nan


def _check_writable_location(path: Path) -> None:
    """Refuse ``path`` unless a file could be created there (its missing parents included)."""
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{str(path)!r} is a directory; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{str(path)!r} exists and is not writable")
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {str(path)!r}: {str(ancestor)!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {str(path)!r}: directory {str(ancestor)!r} is not writable")


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """Argument type: a file to write, with one of ``suffixes`` (any if none), in a writable place."""

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError("needs a file name, got an empty string")
        path = Path(text)
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"file must end in {' or '.join(suffixes)}, got {text!r}")
        _check_writable_location(path)
        return path

    parse.__name__ = "file"
    return parse


def output_dir(text: str) -> Path:
    """Argument type: a directory to write into (created later if missing)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a directory name, got an empty string")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"directory {text!r} is not writable")
        return path
    _check_writable_location(path)
    return path


def state_file(text: str) -> Path:
    """Argument type: a file that is read if it exists and (re)written otherwise, e.g. a checkpoint."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name, got an empty string")
    path = Path(text)
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a readable file")
    _check_writable_location(path)
    return path


def all_parsers(parser: argparse.ArgumentParser) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first) with its command path, e.g. ``("demo", "dp")``."""
    found = [((), parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [((name, *path), p) for path, p in all_parsers(child)]
    return found
