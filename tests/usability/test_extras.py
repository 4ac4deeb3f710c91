"""A missing optional dependency is named with the extra that installs it, never a traceback.

In-process tests hide a module by setting ``sys.modules[name] = None`` (then importing
it fails as on an install without it). The slow test builds a real core-only virtual
environment (``pip install -e`` with no extras) and runs every command there: each
either works or stops before doing anything with one line naming the extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from privfl.audit.suite import run_and_summarise
from privfl.core.extras import EXTRAS, install_hint, require, require_all
from privfl.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[2]


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_named_exists_in_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for module in EXTRAS:
        extra = install_hint(module).split("[")[1].split("]")[0]
        assert re.search(rf"^{extra} = \[", text, flags=re.M), extra


def test_require_names_the_extra_and_passes_other_import_errors_on(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "tenseal")
    with pytest.raises(MissingExtraError, match=r'CKKS needs tenseal: pip install "privfl\[he\]"') as info:
        require("tenseal", "CKKS")
    assert isinstance(info.value, ImportError)  # existing `except ImportError` code keeps working
    with pytest.raises(MissingExtraError, match=r"torch, opacus: .*privfl\[torch\]"):
        hide(monkeypatch, "torch", "opacus")
        require_all(("numpy", "torch", "opacus"), "DP-SGD")
    assert require("numpy", "anything") is np


def test_flower_integration_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("privfl.integrations.flower")]:
        monkeypatch.delitem(sys.modules, name)
    hide(monkeypatch, "flwr")
    with pytest.raises(MissingExtraError, match=r'pip install "privfl\[flower\]"'):
        import privfl.integrations.flower  # noqa: F401


def test_dp_sgd_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from privfl.integrations.opacus import DpSgdSettings, fit_dp_sgd

    hide(monkeypatch, "torch", "opacus")
    settings = DpSgdSettings(noise_multiplier=1.0, max_grad_norm=1.0, batch_size=2, lr=0.1)
    with pytest.raises(MissingExtraError, match=r'pip install "privfl\[torch\]"'):
        fit_dp_sgd(None, np.zeros((2, 2)), np.zeros(2), settings)


def test_audit_without_extras_marks_families_not_run_with_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    hide(monkeypatch, "matplotlib", "tenseal")
    assert run_and_summarise(tmp_path, quick=True) == 0
    out = capsys.readouterr().out
    report = (tmp_path / "README.md").read_text()
    assert "[ERROR]" not in out and "Traceback" not in report and "ERROR" not in report
    assert "0 PASS" not in out and "NOT RUN" in out and "PASS" not in out
    assert 'pip install "privfl[demo]"' in report and 'pip install "privfl[he]"' in report


CORE_COMMANDS: list[tuple[list[str], str | None]] = [
    (["--version"], None),
    ([], None),
    (["budget", "-z", "1", "-q", "0.01", "-T", "100", "--delta", "1e-5"], None),
    (["calibrate", "--epsilon", "3", "--delta", "1e-5", "-q", "0.01", "-T", "100"], None),
    (["demo", "secagg", "--clients", "5", "--dim", "100"], None),
    (["demo"], 'pip install "privfl[demo]"'),
    (["demo", "dp"], 'pip install "privfl[demo]"'),
    (["demo", "secagg", "--clients", "5", "--dim", "100", "--histogram", "h.png"], 'pip install "privfl[demo]"'),
    (["demo", "he", "--clients", "2", "--dim", "10"], 'pip install "privfl[he]"'),
    (
        ["budget", "-z", "1", "-q", "0.01", "-T", "100", "--delta", "1e-5", "--plot", "e.png"],
        'pip install "privfl[demo]"',
    ),
    (
        ["budget", "-z", "1", "-q", "0.01", "-T", "100", "--delta", "1e-5", "--accountant", "pld"],
        "pip install dp-accounting",
    ),
    (["audit", "--quick", "--out", "audit"], None),
]
"""(privfl arguments, the install the command must name, or None if it must work on a core install)."""


@pytest.mark.slow
def test_core_install_every_command_works_or_names_its_extra(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-e", str(ROOT)], env=env, capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    for module in EXTRAS:
        probe = subprocess.run([python, "-c", f"import {module}"], env=env, capture_output=True)
        assert probe.returncode != 0, f"{module} is installed in the core environment"

    def privfl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [env_dir / "bin" / "privfl", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    names = re.findall(r"^    (\w[\w-]*)\s", privfl("--help").stdout, flags=re.M)
    assert {"demo", "budget", "calibrate", "audit"} <= set(names)
    for name in names:  # every subcommand's help, those added later too
        proc = privfl(name, "--help")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (name, proc.stderr)
    for argv, hint in CORE_COMMANDS:
        proc = privfl(*argv)
        assert "Traceback" not in proc.stdout + proc.stderr, (argv, proc.stderr)
        if hint is None:
            assert proc.returncode == 0, (argv, proc.stderr)
        else:
            assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
            assert hint in proc.stderr, (argv, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout, (argv, proc.stdout, proc.stderr)
    report = (tmp_path / "audit" / "README.md").read_text()
    assert "NOT RUN" in report and "Traceback" not in report
    for snippet in ("import privfl.integrations.flower", "from privfl.integrations.opacus import fit_dp_sgd"):
        proc = subprocess.run([python, "-c", snippet], env=env, capture_output=True, text=True)
        if "flower" in snippet:
            assert 'pip install "privfl[flower]"' in proc.stderr
        else:
            assert proc.returncode == 0


def test_digits_task_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from privfl.tasks.digits import load_digits_data

    hide(monkeypatch, "sklearn", "sklearn.datasets")
    with pytest.raises(MissingExtraError, match=r'the digits task needs sklearn: pip install "privfl\[demo\]"'):
        load_digits_data.__wrapped__(seed=12345)  # past the cache
