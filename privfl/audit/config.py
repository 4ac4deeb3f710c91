"""How hard the audits try: trial counts and the statistical settings they share."""

from __future__ import annotations

from dataclasses import dataclass

from privfl.errors import ConfigError


@dataclass(frozen=True)
class AuditSettings:
    """Trial counts and confidence of one audit run.

    Attributes:
        dp_bulk_trials: trials per hypothesis of the bulk central-DP mechanism audit.
        dp_loop_trials: trials per hypothesis of the end-to-end central-DP aggregator audits.
        dp_secagg_trials: trials per hypothesis of the central-DP-over-SecAgg+ audit (a full
            SecAgg+ round each).
        local_trials: trials per hypothesis of the local-DP mod audit.
        dp_sgd_trials: trials per hypothesis of the Opacus DP-SGD audit (one training each).
        planted_trials: trials per hypothesis against each planted bug.
        secagg_trials: masked vectors collected per SecAgg+ statistical test.
        confidence: joint confidence of every epsilon lower bound.
        test_level: family-wise significance level of each SecAgg+ statistical check: the
            probability that a correct implementation FAILs it by chance.
        delta: delta of the DP claims under audit.
        seed: seed of the experiment's own (non-private) randomness.
    """

    dp_bulk_trials: int
    dp_loop_trials: int
    dp_secagg_trials: int
    local_trials: int
    dp_sgd_trials: int
    planted_trials: int
    secagg_trials: int
    confidence: float = 0.95
    test_level: float = 1e-3
    delta: float = 1e-5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "dp_bulk_trials",
            "dp_loop_trials",
            "dp_secagg_trials",
            "local_trials",
            "dp_sgd_trials",
            "planted_trials",
            "secagg_trials",
        ):
            if getattr(self, name) < 10:
                raise ConfigError(f"{name} must be at least 10, got {getattr(self, name)}")
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0.0 < self.test_level < 0.5:
            raise ConfigError(f"test_level must be in (0, 0.5), got {self.test_level}")
        if not 0.0 < self.delta < 1.0:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")


QUICK = AuditSettings(
    dp_bulk_trials=2_000_000,
    dp_loop_trials=10_000,
    dp_secagg_trials=1_500,
    local_trials=10_000,
    dp_sgd_trials=1_500,
    planted_trials=3_000,
    secagg_trials=20,
)
"""Under two minutes on two cores."""

FULL = AuditSettings(
    dp_bulk_trials=20_000_000,
    dp_loop_trials=100_000,
    dp_secagg_trials=20_000,
    local_trials=100_000,
    dp_sgd_trials=20_000,
    planted_trials=10_000,
    secagg_trials=100,
)
"""Tighter bounds; several minutes."""
