from __future__ import annotations

import re

import pytest

from privfl.cli import main


@pytest.mark.parametrize("preset", ["fl-8192", "fl-8192-seeded"])
def test_demo_reports_sizes_timings_and_a_small_error(capsys, preset):
    assert main(["demo", "he", "--clients", "3", "--dim", "5000", "--preset", preset]) == 0
    out = capsys.readouterr().out
    assert "client    3/3" in out and "server aggregation" in out and "decryption" in out
    ratio = float(re.search(r"ciphertexts .*\((\d+\.\d+)x\)", out).group(1))
    assert ratio > 1.0
    error = float(re.search(r"plaintext FedAvg\| = (\S+)", out).group(1))
    assert error < 1e-5  # the release grid of a 3-client sum over ~800 examples: ~1e-6


def test_demo_refuses_a_bad_dimension(capsys):
    assert main(["demo", "he", "--clients", "2", "--dim", "0"]) == 2
    assert "--dim" in capsys.readouterr().err


def test_demo_in_committee_mode(capsys):
    assert main(["demo", "he", "--committee", "3", "--clients", "3", "--dim", "5000"]) == 0
    out = capsys.readouterr().out
    assert "committee of 3" in out and "any 2 can decrypt" in out and "members [1, 2] of 3 decrypted" in out
    error = float(re.search(r"plaintext FedAvg\| = (\S+)", out).group(1))
    assert error < 1e-4  # the committee's release grid over ~800 examples: ~1e-6
