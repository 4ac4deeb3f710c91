"""Privacy accounting: RDP of the (Poisson-subsampled) Gaussian, conversion to (epsilon, delta),
accountants (built-in RDP, optional PLD via dp_accounting), noise calibration and the ledger."""

from privfl.accounting.accountant import (
    ACCOUNTANTS,
    OrderGridWarning,
    PrivacyAccountant,
    RdpAccountant,
    make_accountant,
)
from privfl.accounting.calibration import calibrate_noise_multiplier, epsilon_for
from privfl.accounting.conversion import delta_from_rdp, epsilon_from_rdp
from privfl.accounting.distributed import (
    rdp_distributed_discrete_gaussian,
    rdp_poisson_subsampled,
    rdp_skellam,
    rounded_l1_norm_bound,
    rounded_l2_norm_bound,
)
from privfl.accounting.events import (
    ComposedEvent,
    DistributedDiscreteGaussianEvent,
    DpEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    PoissonSampledEvent,
    SkellamEvent,
    event_from_dict,
)
from privfl.accounting.ledger import LedgerEntry, PrivacyBudget, PrivacyLedger
from privfl.accounting.pld import PldAccountant
from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_gaussian, rdp_poisson_subsampled_gaussian

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ORDERS",
    "ComposedEvent",
    "DistributedDiscreteGaussianEvent",
    "DpEvent",
    "FixedSizeSampledEvent",
    "GaussianEvent",
    "LedgerEntry",
    "OrderGridWarning",
    "PldAccountant",
    "PoissonSampledEvent",
    "PrivacyAccountant",
    "PrivacyBudget",
    "PrivacyLedger",
    "RdpAccountant",
    "SkellamEvent",
    "calibrate_noise_multiplier",
    "delta_from_rdp",
    "epsilon_for",
    "epsilon_from_rdp",
    "event_from_dict",
    "make_accountant",
    "rdp_distributed_discrete_gaussian",
    "rdp_gaussian",
    "rdp_poisson_subsampled",
    "rdp_poisson_subsampled_gaussian",
    "rdp_skellam",
    "rounded_l1_norm_bound",
    "rounded_l2_norm_bound",
]
