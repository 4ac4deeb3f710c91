"""SecAgg+ audits pass against the real protocol and catch a planted client bug."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from privfl.audit import secagg
from privfl.audit.config import QUICK
from privfl.audit.report import Status

SETTINGS = dataclasses.replace(QUICK, secagg_trials=10)


@pytest.mark.parametrize(
    "check",
    [
        lambda: secagg.uniformity_check(SETTINGS, None),
        lambda: secagg.independence_check(SETTINGS),
        lambda: secagg.dropout_lie_check(SETTINGS),
        lambda: secagg.inconsistent_lists_check(SETTINGS),
        lambda: secagg.replay_check(SETTINGS),
        lambda: secagg.active_server_check(SETTINGS),
    ],
    ids=["uniformity", "independence", "dropout-lie", "inconsistent-lists", "replay", "active-server"],
)
def test_real_secagg_passes(check):
    result = check()
    assert result.status is Status.PASS, result


def test_a_client_that_answers_twice_leaks_its_neighbour_and_the_audit_catches_it():
    result = secagg.planted_check(SETTINGS)
    assert result.status is Status.PASS, result
    assert "1.000000" in dict(result.figures)["correlation of the recovered vector with the victim's clipped update"]


def test_uniformity_test_rejects_a_non_uniform_vector():
    rng = np.random.default_rng(0)
    skewed = (rng.beta(2, 5, 4096) * 2**19).astype(np.uint32)
    assert max(secagg.uniformity_p_values(skewed, 2**19)) < 1e-6
    uniform = rng.integers(0, 2**19, 4096, dtype=np.uint32)
    assert min(secagg.uniformity_p_values(uniform, 2**19)) > 1e-4


def test_the_harness_records_the_servers_transcript_and_recovers_the_sum():
    harness = secagg.SecAggHarness(secagg._updates(np.random.default_rng(0)))
    result = harness.run(1)
    assert result.survivors == tuple(range(1, secagg.NUM_CLIENTS + 1))
    quantizer = result.params.quantizer
    total = quantizer.dequantize_sum(result.total[:-1], len(result.survivors))
    expected = np.sum(list(harness.updates.values()), axis=0)
    assert np.max(np.abs(total - expected)) <= secagg.NUM_CLIENTS * quantizer.step
    assert len(harness.masked(1)) == secagg.NUM_CLIENTS and not harness.refusals
