"""Optional dependencies and the ``pip install "privfl[...]"`` extra that provides each.

Core privfl needs numpy, scipy, cryptography, msgpack and tqdm only (``pyproject.toml``);
everything else is behind an extra. :func:`require` imports an optional module or raises
:class:`~privfl.errors.MissingExtraError` naming the extra, so a user never sees a bare
``No module named ...``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from privfl.errors import MissingExtraError

EXTRAS: dict[str, str] = {
    "sklearn": "demo",
    "matplotlib": "demo",
    "tenseal": "he",
    "torch": "torch",
    "opacus": "torch",
    "flwr": "flower",
    "dp_accounting": "dev",
}
"""Top-level module name -> the extra of ``pyproject.toml`` that installs it."""


def install_hint(module: str) -> str:
    """The pip command that installs ``module``'s extra."""
    return f'pip install "privfl[{EXTRAS[module.split(".")[0]]}]"'


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a half-installed module
        return False


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of ``modules`` that are not installed, in order."""
    return [m for m in modules if not is_installed(m)]


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise an error that says which extra to install.

    Raises:
        MissingExtraError: ``module`` is not installed (an ``ImportError`` too).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but one of *its* imports failed: not a missing extra
        raise MissingExtraError(f"{feature} needs {module.split('.')[0]}: {install_hint(module)}") from None


def require_all(modules: tuple[str, ...] | list[str], feature: str) -> None:
    """Check that every module of ``modules`` is installed, naming the extras of the missing ones.

    Raises:
        MissingExtraError: some are missing; nothing is imported.
    """
    absent = missing(modules)
    if absent:
        hints = sorted({install_hint(m) for m in absent})
        raise MissingExtraError(f"{feature} needs {', '.join(absent)}: {' and '.join(hints)}")
