"""Issue 13, items 1 and 2: every DP round releases and is charged; one clip norm, sent by the server."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_helpers import fixed_trainer, round_spec, run_exchange, train_message

from privfl.audit.dp_abort import audit_abort_channel
from privfl.audit.planted import AbortingDp, UnmarkedDp
from privfl.core.context import Context
from privfl.core.exchange import Aggregate, RoundSpec
from privfl.core.mods import compose
from privfl.core.names import DP_CLIP_NORM, DP_MODE, DP_MODE_CENTRAL, LOCAL_DP_EPSILON
from privfl.core.plain import PlainAggregator, weighted_client_metrics
from privfl.dp import CentralDp, ClipEachUpdate, FixedClippingMod, l2_norm
from privfl.dp.clipping import clip_to_round_config
from privfl.errors import ConfigError, MessageError
from privfl.secagg.client import SecAggMod
from privfl.secagg.config import SecAggConfig
from privfl.secagg.server import SecAggPlusAggregator
from privfl.server.strategy import FedAvg
from privfl.server.transport import InProcessClients, drive

PARAMS = {"w": np.zeros(4, dtype=np.float64)}
BIG = {"w": np.full(4, 5.0)}  # norm 10, far outside the clip norm 1
DELTA = 1e-5


def _secagg() -> SecAggPlusAggregator:
    return SecAggPlusAggregator(SecAggConfig(coordinate_bound=8.0, bits=16, weighting="uniform"), semi_honest=True)


def test_an_empty_round_releases_noise_and_is_charged_under_default_min_clients() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(0))
    outcome = run_exchange(FedAvg(aggregator=dp).fit_round(round_spec(PARAMS, ())), lambda m: m)
    assert outcome.num_clients == 0 and outcome.metrics["dp_noise_only"] == 1.0
    assert not np.array_equal(outcome.parameters["w"], PARAMS["w"])  # the noise is released
    assert len(dp.ledger.entries) == 1


def test_secagg_below_its_floor_releases_noise_only_without_contacting_anyone() -> None:
    dp = CentralDp(_secagg(), noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(0))
    spec = round_spec(PARAMS, (7,))
    sent = []
    outcome = run_exchange(FedAvg(aggregator=dp).fit_round(spec), lambda m: sent.append(m) or m)
    assert sent == [] and outcome.num_clients == 0 and outcome.dropped == (7,)
    assert outcome.metrics["dp_noise_only"] == 1.0 and len(dp.ledger.entries) == 1
    # Floor m (3 with the default SecAgg+ parameters): the noise-only fallback turns 0 into a
    # sum of m updates when the target arrives, so the sensitivity (and the noise) is m (C + rounding).
    floor = _secagg().min_clients
    assert floor == 3
    per_client = 1.0 + _secagg().contribution_error_bound(spec)
    assert outcome.metrics["dp_sensitivity"] == pytest.approx(floor * per_client)
    assert outcome.metrics["dp_noise_std"] == pytest.approx(floor * per_client)


def _abort_audit(make_strategy, app, *, population: int, rate: float, rounds: int, trials: int):
    return audit_abort_channel(
        make_strategy,
        app,
        population=population,
        rate=rate,
        rounds=rounds,
        trials=trials,
        delta=DELTA,
        initial_parameters=PARAMS,
        ledger_of=lambda s: s.aggregator.ledger,
        rng=np.random.default_rng(1),
    )


def test_abort_audit_fails_on_count_aborts_and_passes_when_every_round_releases() -> None:
    def dp() -> CentralDp:
        return CentralDp.with_server_clipping(noise_multiplier=50.0, clip_norm=1.0)

    app = fixed_trainer(BIG)
    settings = {"population": 2, "rate": 0.5, "rounds": 100, "trials": 1000}
    leaky = _abort_audit(lambda: FedAvg(aggregator=UnmarkedDp(dp())), app, **settings)
    assert leaky.release_rate_without == pytest.approx(0.5, abs=0.02)
    assert leaky.release_rate_with == pytest.approx(0.75, abs=0.02)
    assert leaky.bound.epsilon > 3.0 > 1.0 > leaky.ledger_epsilon and not leaky.passed
    sound = _abort_audit(lambda: FedAvg(aggregator=dp()), app, **settings)
    assert sound.release_rate_without == sound.release_rate_with == 1.0
    assert sound.bound.epsilon == 0.0 and sound.passed


def test_abort_audit_over_secagg_floor() -> None:
    def strategy(cls):
        return lambda: FedAvg(aggregator=cls(_secagg(), noise_multiplier=50.0, clip_norm=1.0), min_clients=0)

    app = compose(fixed_trainer(BIG), [SecAggMod(semi_honest=True)])
    settings = {"population": 4, "rate": 0.5, "rounds": 60, "trials": 1000}
    leaky = _abort_audit(strategy(AbortingDp), app, **settings)
    assert leaky.bound.epsilon > 2.0 > 1.0 > leaky.ledger_epsilon and not leaky.passed
    sound = _abort_audit(strategy(CentralDp), app, **settings)
    assert sound.release_rate_without == sound.release_rate_with == 1.0 and sound.passed


def test_secagg_clients_without_a_clipping_mod_clip_to_the_servers_norm() -> None:
    """Before issue 13 the unclipped updates (norm 10 each) entered the sum that was noised for C = 1."""
    dp = CentralDp(_secagg(), noise_multiplier=1e-9, clip_norm=1.0, rng=np.random.default_rng(0))
    clients = InProcessClients(compose(fixed_trainer(BIG), [SecAggMod(semi_honest=True)]))
    agg = drive(dp.aggregate(round_spec(PARAMS, (1, 2, 3))), clients.deliver)
    assert agg.num_clients == 3
    assert l2_norm(agg.update_sum) <= 3 * (1.0 + _secagg().contribution_error_bound(round_spec(PARAMS, (1,))))
    assert l2_norm(agg.update_sum) > 2.9


def test_a_clipping_mod_that_disagrees_with_the_server_is_refused() -> None:
    config = {DP_CLIP_NORM: 1.0, DP_MODE: DP_MODE_CENTRAL}
    message = train_message(PARAMS).replace(config=config)
    with pytest.raises(ConfigError, match="accounts for clip norm 1"):
        FixedClippingMod(5.0)(message, Context(node_id=1), fixed_trainer(BIG))
    reply = FixedClippingMod(1.0)(message, Context(node_id=1), fixed_trainer(BIG))
    assert l2_norm(reply.arrays) == pytest.approx(1.0)
    # Under SecAgg+ the disagreeing client refuses (a dropout), so its update never enters the sum.
    dp = CentralDp(_secagg(), noise_multiplier=1e-9, clip_norm=1.0, rng=np.random.default_rng(0))
    clients = InProcessClients(compose(fixed_trainer(BIG), [SecAggMod(semi_honest=True), FixedClippingMod(5.0)]))
    with pytest.raises(Exception, match="accounts for clip norm 1"):
        drive(dp.aggregate(round_spec(PARAMS, (1, 2, 3))), clients.deliver)


def test_clip_to_round_config_refuses_what_it_cannot_honour() -> None:
    reply = fixed_trainer(BIG)(train_message(PARAMS), Context(node_id=1))
    assert clip_to_round_config({}, PARAMS, reply) is reply  # not a DP round
    clipped = clip_to_round_config({DP_CLIP_NORM: 2.0, DP_MODE: DP_MODE_CENTRAL}, PARAMS, reply)
    assert l2_norm(clipped.arrays) == pytest.approx(2.0)
    for config in (
        {DP_CLIP_NORM: 1.0, DP_MODE: "local"},
        {DP_CLIP_NORM: 1.0},
        {DP_MODE: DP_MODE_CENTRAL},
        {DP_CLIP_NORM: -1.0, DP_MODE: DP_MODE_CENTRAL},
        {DP_CLIP_NORM: math.inf, DP_MODE: DP_MODE_CENTRAL},
    ):
        with pytest.raises(MessageError):
            clip_to_round_config(config, PARAMS, reply)


def test_central_dp_over_plain_aggregation_must_clip_at_the_accounted_norm() -> None:
    with pytest.raises(ConfigError, match="with_server_clipping"):
        CentralDp(PlainAggregator(weighting="uniform"), noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(ConfigError, match="with_server_clipping"):
        CentralDp(PlainAggregator("uniform", ClipEachUpdate(5.0)), noise_multiplier=1.0, clip_norm=1.0)
    CentralDp(PlainAggregator("uniform", ClipEachUpdate(1.0)), noise_multiplier=1.0, clip_norm=1.0)


def test_the_round_config_carries_the_clip_norm_to_every_client() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=0.5, rng=np.random.default_rng(0))
    seen = []
    run_exchange(dp.aggregate(round_spec(PARAMS, (1, 2))), lambda m: seen.append(m.config) or _echo(m))
    assert seen and all(c[DP_CLIP_NORM] == 0.5 and c[DP_MODE] == DP_MODE_CENTRAL for c in seen)


def _echo(message):
    return message.reply(arrays=message.arrays, metrics={"num_examples": 1})


def test_local_epsilons_across_clients_are_a_maximum() -> None:
    metrics = weighted_client_metrics([(1000, {LOCAL_DP_EPSILON: 1.0, "loss": 1.0}), (1, {LOCAL_DP_EPSILON: 9.0})])
    assert metrics[LOCAL_DP_EPSILON] == 9.0
    assert metrics["loss"] == 1.0


def test_aggregate_marks_dp_releases() -> None:
    dp = CentralDp.with_server_clipping(noise_multiplier=1.0, clip_norm=1.0, rng=np.random.default_rng(0))
    agg: Aggregate = run_exchange(dp.aggregate(round_spec(PARAMS, ())), lambda m: m)
    assert agg.dp_release and agg.weight_sum == pytest.approx(10.0)


@pytest.mark.slow  # CKKS key generation: several seconds
def test_ckks_clients_clip_to_the_round_config_before_encrypting() -> None:
    from privfl.core.exchange import SamplingInfo
    from privfl.he import FL_8192, CkksClientMod, CkksKeys, ClientCipher, HEFedAvg, decrypt_model

    keys = CkksKeys.generate(FL_8192)
    clients = InProcessClients(compose(fixed_trainer(BIG), [CkksClientMod(keys)]))
    config = {DP_CLIP_NORM: 0.5, DP_MODE: DP_MODE_CENTRAL}
    spec = RoundSpec(0, 1, (1, 2, 3), PARAMS, config, SamplingInfo(3, 1.0, True))
    outcome = drive(HEFedAvg(keys.public()).fit_round(spec), clients.deliver)
    model = decrypt_model(outcome.parameters, ClientCipher(keys))
    assert l2_norm(model) == pytest.approx(0.5, abs=1e-4)  # each update (norm 10) clipped to 0.5 before Enc
