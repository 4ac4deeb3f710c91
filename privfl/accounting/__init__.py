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
from privfl.accounting.events import (
    ComposedEvent,
    DpEvent,
    FixedSizeSampledEvent,
    GaussianEvent,
    PoissonSampledEvent,
    event_from_dict,
)
from privfl.accounting.ledger import LedgerEntry, PrivacyBudget, PrivacyLedger
from privfl.accounting.pld import PldAccountant
from privfl.accounting.rdp import DEFAULT_ORDERS, rdp_gaussian, rdp_poisson_subsampled_gaussian

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ORDERS",
    "ComposedEvent",
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
    "calibrate_noise_multiplier",
    "delta_from_rdp",
    "epsilon_for",
    "epsilon_from_rdp",
    "event_from_dict",
    "make_accountant",
    "rdp_gaussian",
    "rdp_poisson_subsampled_gaussian",
]
