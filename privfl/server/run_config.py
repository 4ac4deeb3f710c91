"""One run configuration for every driver of the round loop (the bundled simulation, Flower's grid)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privfl.core.exchange import Strategy
from privfl.core.message import ArrayDict, Config
from privfl.core.wire import DEFAULT_LIMITS, WireLimits
from privfl.errors import ConfigError
from privfl.server.failures import FailurePlan
from privfl.server.history import RoundRecord
from privfl.server.sampling import FixedFractionSampler, Sampler
from privfl.server.strategy import FedAvg

CentralizedEvaluate = Callable[[int, ArrayDict], dict[str, float]]
"""``(server_round, parameters) -> metrics`` evaluated by the server on held-out data."""

ON_CLIENT_ERROR = ("raise", "drop")
_NONE_IS_DEFAULT = frozenset(["strategy", "sampler", "fit_config", "callbacks"])


@dataclass(frozen=True)
class RunConfig:
    """What a federated run does, whichever runtime moves its messages.

    Attributes:
        num_rounds: total rounds (a resumed run continues up to this number).
        strategy: server strategy; plain :class:`~privfl.server.FedAvg` by default.
            It holds the run's state (a DP wrapper's ledger), so give each run its own.
        sampler: client sampling per round; all clients by default.
        fit_config: config sent with every training task (``server_round`` is added).
        centralized_evaluate: server-side evaluation after each round.
        evaluate_fraction: fraction of clients asked for federated evaluation each
            round, in [0, 1] (0 disables it).
        failures: injected client dropouts, applied before a message is sent.
        seed: seed of client sampling. ``None`` draws a 128-bit one from the OS CSPRNG
            (stored in the checkpoint so a resumed run samples identically). Who is
            sampled must stay hidden for DP's amplification by subsampling: leave it
            ``None`` in private runs. The draws are PCG64 streams keyed by the seed:
            unpredictable without it, though PCG64 is not a CSPRNG.
        run_id: id stamped on every message, in [0, 2^63).
        checkpoint: path of the checkpoint file; if it exists the run resumes from it
            (bundled loop only: a Flower run leaves checkpointing to Flower).
        progress: show a progress bar (bundled loop only).
        callbacks: called with each round's record after it is checkpointed.
        on_client_error: ``"raise"`` to propagate a client's failure, ``"drop"`` to
            treat the client as dropped out (as a real deployment sees it).
        limits: wire limits for decoding on both sides (bundled loop).
    """

    num_rounds: int
    strategy: Strategy = field(default_factory=FedAvg)
    sampler: Sampler = field(default_factory=lambda: FixedFractionSampler(1.0))
    fit_config: Config = field(default_factory=dict)
    centralized_evaluate: CentralizedEvaluate | None = None
    evaluate_fraction: float = 0.0
    failures: FailurePlan | None = None
    seed: int | None = None
    run_id: int = 0
    checkpoint: Path | None = None
    progress: bool = True
    callbacks: tuple[Callable[[RoundRecord], None], ...] = ()
    on_client_error: str = "raise"
    limits: WireLimits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not _is_int(self.num_rounds) or self.num_rounds < 0:
            raise ConfigError(f"num_rounds must be an int >= 0, got {self.num_rounds!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ConfigError(f"seed must be None or an int >= 0, got {self.seed!r}")
        if not _is_int(self.run_id) or not 0 <= self.run_id < 2**63:
            raise ConfigError(f"run_id must be an int in [0, 2^63), got {self.run_id!r}")
        if isinstance(self.evaluate_fraction, bool) or not 0.0 <= self.evaluate_fraction <= 1.0:
            raise ConfigError(f"evaluate_fraction must be in [0, 1], got {self.evaluate_fraction!r}")
        if self.on_client_error not in ON_CLIENT_ERROR:
            raise ConfigError(f"on_client_error must be one of {ON_CLIENT_ERROR}, got {self.on_client_error!r}")
        if not isinstance(self.fit_config, Mapping):
            raise ConfigError(f"fit_config must be a mapping, got {type(self.fit_config).__name__}")
        if any(not callable(c) for c in self.callbacks):
            raise ConfigError("callbacks must be callables taking a RoundRecord")
        for name in ("strategy", "sampler"):
            if getattr(self, name) is None:
                raise ConfigError(f"{name} must not be None (leave it out for the default)")
        # Owned copies: a caller changing its dict or list later does not change the run.
        object.__setattr__(self, "fit_config", dict(self.fit_config))
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))

    @classmethod
    def build(cls, config: RunConfig | None, options: Mapping[str, Any]) -> RunConfig:
        """``config`` with ``options`` (field names) replaced, or a new one from ``options``.

        Raises:
            ConfigError: an option that is not a field, or a missing ``num_rounds``.
        """
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown run option(s) {sorted(unknown)}; RunConfig fields are: {fields}")
        # ``None`` for these means "the default", as keyword callers have always written it.
        options = {k: v for k, v in options.items() if not (k in _NONE_IS_DEFAULT and v is None)}
        if config is not None:
            return dataclasses.replace(config, **options)
        if "num_rounds" not in options:
            raise ConfigError("give num_rounds (or a RunConfig)")
        return cls(**options)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
