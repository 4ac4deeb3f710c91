"""The run's settings (from the Flower run config) and the privfl pieces both apps are built from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from privfl.client import ClientApp
from privfl.dp import CentralDp, FixedClippingMod
from privfl.secagg import SecAggConfig, SecAggMod, SecAggPlusAggregator
from privfl.server import FedAvg, PoissonSampler
from privfl.tasks.digits import DigitsFederation


@dataclass(frozen=True)
class Settings:
    """The run's settings; each field is the run-config key with ``-`` for ``_`` (e.g. ``num-rounds``).

    Attributes:
        num_clients: federation size N (must equal the number of SuperNodes).
        num_rounds: training rounds.
        sampling_rate: Poisson sampling probability q of each client per round.
        noise_multiplier: z; the server adds N(0, (z * clip_norm)^2) to the SecAgg+ sum.
        clip_norm: L2 bound C every client clips its update to before masking.
        secagg_bits: SecAgg+ quantisation bits per coordinate.
        delta: delta at which epsilon is reported.
        seed: seed of client sampling and data partitioning (no privacy-relevant randomness).
        ledger_path: where the ServerApp saves the privacy ledger ("" to skip).
    """

    num_clients: int = 20
    num_rounds: int = 10
    sampling_rate: float = 0.5
    noise_multiplier: float = 0.8
    clip_norm: float = 1.0
    secagg_bits: int = 16
    delta: float = 1e-5
    seed: int = 0
    ledger_path: str = ""

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> Settings:
        """Defaults overridden by the run config (``flwr run . --run-config "num-rounds=3"``)."""
        defaults = cls()
        names = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name in names:
                values[name] = type(getattr(defaults, name))(value)
        return cls(**values)

    def federation(self) -> DigitsFederation:
        return DigitsFederation(num_clients=self.num_clients, seed=self.seed)

    def client_app(self) -> ClientApp:
        """The privfl client: SecAggMod (semi-honest) is outermost; it asks the inner chain for the update,
        which FixedClippingMod clips to L2 norm C before SecAgg+ quantises and masks it."""
        return ClientApp(self.federation(), mods=[SecAggMod(semi_honest=True), FixedClippingMod(self.clip_norm)])

    def strategy(self) -> FedAvg:
        """FedAvg over the SecAgg+ sum of clipped updates, with central DP noise added to that sum.

        The server never sees an update, so it cannot clip: clients do. An L2 bound C implies
        the per-coordinate bound C that SecAgg+ quantises within. Weights are uniform, as
        the DP noise is calibrated to one clipped update per client.
        """
        secure_sum = SecAggPlusAggregator(
            SecAggConfig(coordinate_bound=self.clip_norm, bits=self.secagg_bits, max_weight=1, weighting="uniform"),
            semi_honest=True,
        )
        dp = CentralDp(secure_sum, noise_multiplier=self.noise_multiplier, clip_norm=self.clip_norm, delta=self.delta)
        return FedAvg(aggregator=dp, min_clients=0)

    def sampler(self) -> PoissonSampler:
        return PoissonSampler(self.sampling_rate)
