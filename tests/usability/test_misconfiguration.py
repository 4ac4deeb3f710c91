"""A misconfigured run stops loudly and says what to change (issue 16, item 4)."""

from __future__ import annotations

import numpy as np
import pytest

from privfl.client import ClientApp
from privfl.core.message import as_array_dict
from privfl.dp import FixedClippingMod
from privfl.errors import ConfigError
from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.server import FedAvg, run_simulation
from privfl.server.simulation import ABORTS_BEFORE_STOP
from privfl.server.transport import ClientError
from privfl.tasks.digits import DigitsFederation, initial_parameters

FED = DigitsFederation(num_clients=4, alpha=1.0, seed=0, epochs=1)


def simulate(app: ClientApp, strategy, rounds: int = 6):
    return run_simulation(
        app,
        num_clients=4,
        num_rounds=rounds,
        initial_parameters=initial_parameters(),
        strategy=strategy,
        progress=False,
    )


@pytest.fixture(scope="module")
def keys():
    he = pytest.importorskip("privfl.he")
    pytest.importorskip("tenseal")
    return he.CkksKeys.generate(he.FL_4096)


def test_clients_without_the_ckks_mod_stop_the_run_with_what_to_add(keys) -> None:
    from privfl.he import HEFedAvg

    with pytest.warns(UserWarning, match="run stopped after round 3"):
        result = simulate(ClientApp(FED), HEFedAvg(keys.public()))
    assert len(result.history.rounds) == ABORTS_BEFORE_STOP
    assert all(r.status == "aborted" for r in result.history.rounds)
    assert "consecutive rounds aborted" in result.stopped and "needs CkksClientMod(keys)" in result.stopped


def test_ckks_mod_under_plain_fedavg_names_hefedavg(keys) -> None:
    from privfl.he import CkksClientMod

    with pytest.raises(ClientError, match="CkksClientMod works with the HEFedAvg strategy"):
        simulate(ClientApp(FED, mods=[CkksClientMod(keys)]), FedAvg(), rounds=1)


def test_dp_mod_outside_the_protocol_mod_says_to_swap_them() -> None:
    app = ClientApp(FED, mods=[FixedClippingMod(clip_norm=1.0), SecAggMod(semi_honest=True)])
    strategy = FedAvg(aggregator=SecAggPlusAggregator(SecAggConfig(weighting="uniform"), semi_honest=True))
    with pytest.raises(ClientError, match=r"must come before the DP mods in ClientApp\(mods=\[\.\.\.\]\)"):
        simulate(app, strategy, rounds=1)


def test_a_round_that_aborts_once_does_not_stop_the_run() -> None:
    """Chance aborts (different errors, or not in a row) are recorded and the run goes on."""
    calls = {"n": 0}
    reasons = {1: "no quorum", 2: "late keys", 4: "no quorum"}

    class Flaky(FedAvg):
        def fit_round(self, spec):
            calls["n"] += 1
            if calls["n"] in reasons:
                from privfl.errors import ProtocolAbort

                raise ProtocolAbort(reasons[calls["n"]])
            return (yield from super().fit_round(spec))

    with pytest.warns(UserWarning, match="round 1 aborted: ProtocolAbort: no quorum"):
        result = simulate(ClientApp(FED), Flaky(), rounds=5)
    assert [r.status for r in result.history.rounds] == ["aborted", "aborted", "ok", "aborted", "ok"]
    assert result.stopped == ""


def test_initial_parameters_accept_a_flower_style_list() -> None:
    params = FED(1).get_parameters({})
    assert list(as_array_dict(params)) == ["0", "1"]
    result = run_simulation(
        ClientApp(FED),
        num_clients=4,
        num_rounds=1,
        initial_parameters=params,
        centralized_evaluate=FED.evaluate,
        progress=False,
    )
    assert result.history.rounds[0].centralized["accuracy"] > 0.2
    with pytest.raises(ConfigError, match="dict of named arrays or a list of arrays"):
        as_array_dict(np.zeros(3))
    with pytest.raises(ConfigError, match="numeric array"):
        as_array_dict([np.array(["a"])])
