"""examples/flower_app runs on Flower's simulation runtime and spends the bundled loop's epsilon."""

from __future__ import annotations

import sys
from pathlib import Path

import flwr  # noqa: F401
import pytest
import ray  # noqa: F401
from flwr.simulation import run_simulation as flower_run_simulation

import privfl.dp
import privfl.secagg  # noqa: F401
from privfl.accounting import PrivacyLedger
from privfl.server import run_simulation as bundled_run_simulation
from privfl.tasks.digits import initial_parameters

pytestmark = pytest.mark.slow  # starts Ray
APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "flower_app"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(APP_DIR))
    yield __import__("run_simulation")
    for name in [m for m in sys.modules if m == "run_simulation" or m.startswith("privfl_flower_app")]:
        del sys.modules[name]


def test_flower_example_trains_with_secagg_and_central_dp(example, tmp_path: Path) -> None:
    from privfl_flower_app.client_app import make_client_app
    from privfl_flower_app.server_app import make_server_app
    from privfl_flower_app.task import Settings

    settings = Settings(num_clients=8, num_rounds=3, ledger_path=str(tmp_path / "ledger.json"))
    flower_run_simulation(
        server_app=make_server_app(settings),
        client_app=make_client_app(settings),
        num_supernodes=settings.num_clients,
        backend_config=example.BACKEND_CONFIG,
    )
    ledger = PrivacyLedger.load(settings.ledger_path)

    reference = bundled_run_simulation(
        settings.client_app(),
        num_clients=settings.num_clients,
        num_rounds=settings.num_rounds,
        initial_parameters=initial_parameters(),
        strategy=settings.strategy(),
        sampler=settings.sampler(),
        seed=settings.seed,
        progress=False,
    )
    reference_ledger = reference.strategy.aggregator.ledger
    assert all(r.status == "ok" for r in reference.history.rounds)
    assert len(ledger.entries) == len(reference_ledger.entries) == settings.num_rounds
    assert ledger.epsilon(settings.delta) == reference_ledger.epsilon(settings.delta) > 0
