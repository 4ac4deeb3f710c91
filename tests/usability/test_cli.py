"""The ``privfl`` command never shows a user a traceback.

Every subcommand's ``--help`` is checked, and so is every option of every subcommand
(the parser is walked, so subcommands added later are covered): a value that option
cannot take ends in exit status 2, one line on stderr that names the option, nothing
written, and no traceback. A table adds the bad inputs a newcomer actually typed
(issue 16): unwritable and wrong-extension paths, empty names, a text file given as a
checkpoint, and flag combinations that are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

from privfl.accounting import GaussianEvent, PrivacyBudget, PrivacyLedger
from privfl.cli import build_parser, main
from privfl.cli.options import all_parsers

ROOT = Path(__file__).resolve().parents[2]
PARSERS = all_parsers(build_parser())
COMMANDS = [path for path, _ in PARSERS]


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "privfl")
def test_help_of_every_subcommand_is_plain_text(path: tuple[str, ...], capsys: pytest.CaptureFixture) -> None:
    code, out, err = run([*path, "--help"], capsys)
    assert code == 0 and not err
    assert out.startswith("usage: privfl")
    assert "``" not in out and ":class:" not in out and ":func:" not in out, out
    assert "(default: None)" not in out and "(default: False)" not in out
    for line in out.splitlines():  # a default stated in the text is not repeated by the formatter
        assert line.count("default") <= 1, line


def test_help_shows_a_zero_default(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["demo", "--help"], capsys)
    assert code == 0 and "seed of data split, training and sampling (default: 0)" in " ".join(out.split())


def test_version_and_bare_command(capsys: pytest.CaptureFixture) -> None:
    import privfl

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"privfl {privfl.__version__}"
    code, out, err = run([], capsys)
    assert code == 0 and "usage: privfl" in out and "COMMAND" in out and not err


def _is_path(action: argparse.Action) -> bool:
    return action.type is Path or (
        getattr(action.type, "__module__", "") == "privfl.cli.options"
        and getattr(action.type, "__name__", "") in ("file", "output_dir", "state_file")
    )


def _valued_options() -> list[tuple[tuple[str, ...], str]]:
    """(command path, option) for every option that converts or restricts its value (paths aside)."""
    found = []
    for path, parser in PARSERS:
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
                continue
            if action.choices is not None or (action.type not in (None, str, Path) and not _is_path(action)):
                found.append((path, max(action.option_strings, key=len)))
    return found


@pytest.mark.parametrize(("path", "option"), _valued_options(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_option_refuses_a_nonsense_value_in_one_line(
    path: tuple[str, ...], option: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run([*path, option, "@nonsense"], capsys)
    assert_one_line_error(code, err, option)
    assert not out and not files_under(tmp_path)


def _path_options() -> list[tuple[tuple[str, ...], str]]:
    """(command path, option) for every option whose value is a file or directory to write."""
    return [
        (path, max(action.option_strings, key=len))
        for path, parser in PARSERS
        for action in parser._actions
        if action.option_strings and _is_path(action) and action.type is not Path
    ]


OUTPUT_OPTIONS = ("--out", "--output", "--plot", "--histogram", "--checkpoint", "--save")
"""Option names that say "a file or folder will be written here"."""


def test_every_output_option_checks_its_path_before_any_work() -> None:
    """An option named for an output takes a checking type from privfl.cli.options (not a bare str or Path)."""
    unchecked = [
        (" ".join(path), option)
        for path, parser in PARSERS
        for action in parser._actions
        for option in action.option_strings
        if option.startswith(OUTPUT_OPTIONS) and not (_is_path(action) and action.type is not Path)
    ]
    assert not unchecked, f"use privfl.cli.options.output_file/output_dir/state_file for {unchecked}"


@pytest.mark.parametrize(("path", "option"), _path_options(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_written_path_is_checked_before_any_work(
    path: tuple[str, ...], option: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for value in (str(blocker / "sub" / "x.png"), ""):
        code, out, err = run([*path, option, value], capsys)
        assert_one_line_error(code, err, option)
        assert not out
    assert files_under(tmp_path) == {blocker}


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.json"
    book = PrivacyLedger(budget=PrivacyBudget(3.0, 1e-5))
    book.record(GaussianEvent(2.0), server_round=1)
    book.save(path)
    return path


def bad_inputs(tmp: Path, ledger: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    """(argv, what the one error line must contain): the inputs issue 16 reports, and their kin."""
    text = tmp / "notes.txt"
    text.write_text("hello\n")
    folder = tmp / "folder.png"
    folder.mkdir()
    return [
        (["demo", "--rounds", "0"], ("--rounds", "0")),
        (["demo", "--clients", "0"], ("--clients",)),
        (["demo", "--workers", "-1"], ("--workers", "-1")),
        (["demo", "--local-epochs", "0"], ("--local-epochs",)),
        (["demo", "--alpha", "0"], ("--alpha",)),
        (["demo", "--alpha", "nan"], ("--alpha",)),
        (["demo", "--plot", str(tmp / "out.txt")], ("--plot", ".png", "out.txt")),
        (["demo", "--plot", ""], ("--plot", "empty")),
        (["demo", "--plot", str(folder)], ("--plot", "is a directory")),
        (["demo", "--checkpoint", str(text)], ("not a privfl checkpoint",)),
        (["demo", "--checkpoint", str(tmp)], ("--checkpoint",)),
        (["demo", "dp", "--plot", str(tmp / "dp.jpg")], ("--plot", ".png")),
        (["demo", "dp", "--sample-rate", "1.5"], ("--sample-rate", "1.5")),
        (["demo", "dp", "--epsilon", "-3"], ("--epsilon",)),
        (["demo", "secagg", "--dropout", "1.5"], ("--dropout", "1.5")),
        (["demo", "secagg", "--threshold", "1"], ("--threshold", "--neighbours")),
        (["demo", "secagg", "--clients", "1"], ("--clients", ">= 3")),
        (["demo", "secagg", "--histogram", str(tmp / "h.txt")], ("--histogram", ".png")),
        (["demo", "he", "--dim", "0"], ("--dim",)),
        (["audit", "--out", str(text)], ("--out", "not a directory")),
        (["budget", "--ledger", str(ledger), "--accountant", "pld"], ("accountant", "rdp")),
        (["budget", "--ledger", str(ledger), "--plot", str(tmp / "e.png")], ("--plot",)),
        (["budget", "--ledger", str(text)], ("ledger",)),
        (["budget", "-z", "1", "-q", "0.01", "-T", "10", "--delta", "1e-5", "--plot", str(tmp / "e.txt")], ("--plot",)),
        (["calibrate", "--epsilon", "3", "--delta", "1e-5", "-q", "0.01"], ("--rounds",)),
        (["nonsense"], ("COMMAND",)),
    ]


def test_bad_inputs_end_in_one_line_and_exit_2(
    tmp_path: Path, ledger: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv, needles in bad_inputs(tmp_path, ledger):
        before = files_under(tmp_path)
        code, out, err = run(argv, capsys)
        assert_one_line_error(code, err, *needles)
        assert not out, (argv, out)
        assert files_under(tmp_path) == before, argv  # nothing written on failure


def test_ledger_with_plot_names_flags_not_a_python_list(ledger: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(["budget", "--ledger", str(ledger), "--plot", "e.png", "-z", "1"], capsys)
    assert_one_line_error(code, err, "--noise-multiplier, --plot")
    assert "[" not in err


def test_ledger_report_states_its_accountant(ledger: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(["budget", "--ledger", str(ledger), "--accountant", "rdp"], capsys)
    assert code == 0 and "accountant rdp" in out


def test_order_grid_warning_is_one_clean_line(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(["budget", "-z", "100", "-q", "0.00001", "-T", "1", "--delta", "1e-10"], capsys)
    assert code == 0 and "epsilon =" in out
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("privfl budget: warning: the best RDP order") and ".py" not in err


def test_resume_refuses_changed_flags_and_says_where_it_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["demo", "--clients", "4", "--quiet", "--checkpoint", "c.npz", "--plot", "p.png"]
    code, out, _ = run([*base, "--rounds", "2"], capsys)
    assert code == 0 and "resuming" not in out
    for changed, flag in (
        (["--alpha", "100"], "--alpha 0.5 (now 100.0)"),
        (["--seed", "1"], "--seed 0 (now 1)"),
        (["--local-epochs", "2"], "--local-epochs 1 (now 2)"),
    ):
        code, out, err = run([*base, "--rounds", "3", *changed], capsys)
        assert_one_line_error(code, err, flag)
        assert not out
    code, _, err = run([*base, "--rounds", "2"], capsys)
    assert_one_line_error(code, err, "already holds 2 rounds")
    code, out, _ = run([*base, "--rounds", "3"], capsys)
    assert code == 0 and "resuming from round 2 of checkpoint c.npz" in out
    assert "after 3 rounds" in out


def test_dp_demo_says_its_noise_is_fresh(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["demo", "dp", "--rounds", "1", "--clients", "50", "--noise-multiplier", "1", "--quiet"]
    code, out, _ = run([*argv, "--plot", str(tmp_path / "p.png")], capsys)
    assert code == 0 and "fresh CSPRNG noise (results vary)" in out


def test_missing_extra_is_named_before_anything_is_printed(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as on a core install: import sklearn fails
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for argv in (["demo"], ["demo", "dp"], ["demo", "secagg", "--clients", "3", "--histogram", "h.png"]):
        code, out, err = run([*argv], capsys)
        assert_one_line_error(code, err, 'pip install "privfl[demo]"')
        assert not out
    assert not np.any([p.suffix == ".png" for p in files_under(tmp_path)])
