"""DistributedDp over SecAgg+ end to end: what the server sees, dropouts, budget, client checks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

import privfl.ddp.mechanism as mechanism
import privfl.ddp.server as ddp_server
import privfl.secagg.server as secagg_server
from privfl.accounting import PrivacyBudget
from privfl.cli.demo_secagg import _GridClient
from privfl.client.app import ClientApp
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.core.message import Message
from privfl.ddp import DdpParams, DistributedDp, ddp_encoder, ddp_mod
from privfl.ddp.mechanism import clip_flat, unwrap
from privfl.ddp.rotation import rotate, rotation_seed
from privfl.errors import BudgetExceededError, ConfigError, MessageError, ProtocolAbort
from privfl.secagg import protocol as p
from privfl.secagg.client import SecAggMod
from privfl.secagg.config import SecAggConfig
from privfl.secagg.identity import Federation
from privfl.secagg.server import SecAggPlusAggregator
from privfl.server.failures import FailurePlan
from privfl.server.transport import ClientError, InProcessClients, drive

D, N, BITS, GAMMA, VARIANCE = 50, 8, 24, 0.01, 100.0
PARAMS = DdpParams("ddg", D, 1.0, GAMMA, VARIANCE, BITS)
NODES = tuple(range(1, N + 1))


def _updates(seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: rng.normal(size=D) * 0.2 for u in NODES}


def _spec(poisson: bool = True) -> RoundSpec:
    return RoundSpec(
        run_id=3,
        server_round=1,
        nodes=NODES,
        parameters={"w": np.zeros(D)},
        config={},
        sampling=SamplingInfo(100, 0.08, poisson),
    )


def _run(aggregator, updates, mod=ddp_mod(semi_honest=True), failures=None) -> tuple[object, list[str]]:
    clients = InProcessClients(ClientApp(lambda u: _GridClient(updates[u]), mods=[mod]), failures=failures)
    stages: list[str] = []

    def deliver(outbox: Sequence[Message]) -> Iterator[Message]:
        stages.extend(m.metadata.stage for m in outbox)
        return clients.deliver(outbox)

    try:
        return drive(aggregator.aggregate(_spec()), deliver), stages
    except Exception as exc:
        exc.stages = stages  # type: ignore[attr-defined]
        raise


def _dropped_at_masked_input(*nodes: int) -> FailurePlan:
    return FailurePlan.script((1, p.STAGE_MASKED_INPUT, u) for u in nodes)


def test_round_releases_the_noisy_mean_and_accounts_the_survivors() -> None:
    updates = _updates()
    dp = DistributedDp(PARAMS, semi_honest=True, min_clients=5, delta=1e-5)
    agg, _ = _run(dp, updates, failures=_dropped_at_masked_input(4))
    survivors = [u for u in NODES if u != 4]
    assert agg.num_clients == 7 and agg.dropped == (4,)
    assert agg.weight_sum == pytest.approx(8.0)  # the expected count q N, not the survivors
    true = sum(clip_flat(updates[u], 1.0) for u in survivors)
    error = agg.update_sum["w"] - true
    std = math.sqrt(7 * VARIANCE) * GAMMA
    assert np.all(np.abs(error) < 6 * std)
    (entry,) = dp.ledger.entries
    assert entry.locality == "distributed"
    assert entry.event.sampling_rate == 0.08 and entry.event.event.num_clients == 7
    assert dp.server_ledger.entries[0].event.num_clients == 7
    assert 0 < agg.metrics["dp_epsilon"] < agg.metrics["ddp_epsilon_vs_server"]


def test_the_server_never_holds_the_unnoised_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrument the unmasked sum: with plain SecAgg+ it is the exact sum; with DDP it carries every share."""
    unmasked: list[np.ndarray] = []
    noises: list[np.ndarray] = []

    def spy(real):
        def wrapper(*args, **kwargs):
            result = yield from real(*args, **kwargs)
            unmasked.append(result.total.copy())
            return result

        return wrapper

    def recording_noise(params, **kwargs):
        noise = real_noise(params, **kwargs)
        noises.append(noise)
        return noise

    real_noise = mechanism.noise_share
    monkeypatch.setattr(secagg_server, "secagg_exchange", spy(secagg_server.secagg_exchange))
    monkeypatch.setattr(ddp_server, "secagg_exchange", spy(ddp_server.secagg_exchange))
    monkeypatch.setattr(mechanism, "noise_share", recording_noise)
    updates = _updates(1)
    true = sum(clip_flat(updates[u], 1.0) for u in NODES)

    # Weakened: SecAgg+ alone (central DP would noise after this point): the server unmasks the exact sum.
    quantized = SecAggConfig(coordinate_bound=1.0, bits=16, weighting="uniform")
    _run(SecAggPlusAggregator(quantized, semi_honest=True), updates, mod=SecAggMod(semi_honest=True))
    plain = quantized.round_params(N).quantizer.dequantize_sum(unmasked[-1][:-1], N)
    exact = sum(updates[u] for u in NODES)  # every coordinate is inside the quantiser's [-1, 1]
    assert np.max(np.abs(plain - exact)) < N * quantized.round_params(N).quantizer.step

    # Distributed DP: what is unmasked is the noiseless integer sum plus the N recorded shares, nothing less.
    _run(DistributedDp(PARAMS, semi_honest=True, min_clients=5), updates)
    total = unwrap(unmasked[-1], BITS)
    assert len(noises) == N
    noise = sum(noises)
    seed = rotation_seed(3, 1, {"w": np.zeros(D)})
    padded = np.zeros(PARAMS.padded)
    padded[:D] = true
    noiseless = rotate(padded, seed) / GAMMA
    # Without the shares the sum is within rounding (< 1 per client and coordinate) of the noiseless one.
    assert np.max(np.abs(total - noise - noiseless)) < N
    # With them, the coordinates are off by the noise (std sqrt(N * 100) ~ 28 integer steps; 64 samples).
    assert np.std(total - noiseless) > 0.5 * math.sqrt(N * VARIANCE)


class _NoSurvivorCheck(DistributedDp):
    """Weakened: unmasks whatever survived."""

    def _check_survivors(self, spec: RoundSpec, survivors: tuple[int, ...]) -> None:
        return None


def test_too_few_survivors_are_refused_before_unmasking() -> None:
    drops = _dropped_at_masked_input(1, 2, 3)
    weak = _NoSurvivorCheck(PARAMS, semi_honest=True, min_clients=6, num_neighbours=7, threshold=4, corruption=0.0)
    _, stages = _run(weak, _updates(), failures=drops)
    assert p.STAGE_UNMASK in stages  # the weakened server releases a sum with 5 shares, sized for 6
    assert weak.ledger.entries[0].event.event.num_clients == 5

    dp = DistributedDp(
        PARAMS, semi_honest=True, min_clients=6, num_neighbours=7, threshold=4, corruption=0.0
    )  # SecAgg+ alone could unmask 5
    with pytest.raises(ProtocolAbort, match="too little noise") as info:
        _run(dp, _updates(), failures=drops)
    assert p.STAGE_UNMASK not in info.value.stages  # type: ignore[attr-defined]
    assert dp.ledger.entries == () and dp.server_ledger.entries == ()


def test_an_overspending_round_sends_nothing() -> None:
    dp = DistributedDp(PARAMS, semi_honest=True, min_clients=5, budget=PrivacyBudget(0.01, 1e-5))
    with pytest.raises(BudgetExceededError) as info:
        _run(dp, _updates())
    assert info.value.stages == []  # type: ignore[attr-defined]
    assert dp.ledger.entries == ()


def test_fixed_size_sampling_and_wrong_dimension_are_refused() -> None:
    with pytest.raises(ConfigError, match="Poisson"):
        next(DistributedDp(PARAMS, semi_honest=True, min_clients=5).aggregate(_spec(poisson=False)))
    with pytest.raises(ConfigError, match="values"):
        next(
            DistributedDp(
                DdpParams("ddg", D + 1, 1.0, GAMMA, VARIANCE, BITS), semi_honest=True, min_clients=5
            ).aggregate(_spec())
        )


def test_client_refuses_parameters_that_disagree_with_the_round() -> None:
    round_params = SecAggConfig(
        coordinate_bound=1.0, bits=1, max_weight=1, weighting="uniform", modulus_bits=20
    ).round_params(N)
    message = _spec().message_to(1, config=PARAMS.to_config())
    with pytest.raises(MessageError, match="modulus"):
        ddp_encoder(np.zeros(D), message, round_params)
    with pytest.raises(MessageError, match="lacks"):
        ddp_encoder(np.zeros(D), _spec().message_to(1), round_params)


def test_state_round_trips() -> None:
    dp = DistributedDp(PARAMS, semi_honest=True, min_clients=5)
    _run(dp, _updates())
    other = DistributedDp(PARAMS, semi_honest=True, min_clients=5)
    other.load_state_dict(dp.state_dict())
    assert other.ledger.entries == dp.ledger.entries


def test_pinned_client_refuses_a_server_that_lowers_the_noise() -> None:
    lowered = DdpParams("ddg", D, 1.0, GAMMA, VARIANCE / 100, BITS)
    pinned = ddp_mod(semi_honest=True, expected=PARAMS)
    with pytest.raises(ClientError, match="pinned"):
        _run(DistributedDp(lowered, semi_honest=True, min_clients=5), _updates(), mod=pinned)
    agg, _ = _run(DistributedDp(PARAMS, semi_honest=True, min_clients=5), _updates(), mod=pinned)
    assert agg.num_clients == N


def test_secagg_refuses_an_encoder_that_breaks_the_word_format() -> None:
    def wide(update, message, params):
        return np.full(PARAMS.padded, 1 << BITS, dtype=params.dtype)  # not below 2^bits

    with pytest.raises(ClientError, match="below 2"):
        _run(
            DistributedDp(PARAMS, semi_honest=True, min_clients=5),
            _updates(),
            mod=SecAggMod(semi_honest=True, encoder=wide),
        )


def test_active_server_mode_with_a_signed_roster_and_pinned_parameters() -> None:
    keys = Federation.generate(NODES, corruption=0.0)
    dp = DistributedDp(PARAMS, roster=keys.roster, min_clients=5, corruption=0.0)
    agg, stages = _run(dp, _updates(), mod=ddp_mod(trust=keys.trust, expected=PARAMS))
    assert agg.num_clients == N and agg.metrics["secagg.active_server"] == 1.0
    assert p.STAGE_CONSISTENCY in stages  # the consistency round ran before unmasking
    with pytest.raises(ConfigError, match="trust model"):
        DistributedDp(PARAMS, min_clients=5)
