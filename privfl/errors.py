"""Typed errors raised by privfl.

Every error privfl raises on purpose derives from :class:`PrivflError`, so a caller
can catch the library's failures without catching programming errors. Messages
say what was wrong and what is allowed.
"""

from __future__ import annotations


class PrivflError(Exception):
    """Base class of every error privfl raises on purpose."""


class ConfigError(PrivflError, ValueError):
    """A configuration or argument value is invalid (e.g. ``delta`` outside (0, 1))."""


class WireError(PrivflError):
    """Bytes could not be decoded into a valid message (malformed, hostile or too large)."""


class MessageError(PrivflError):
    """A decoded message's content is not valid here (array names, shapes, dtypes, values, metrics)."""


class ProtocolError(PrivflError):
    """A message's routing is not valid here: out of order, for the wrong run, round, kind or stage,
    addressed to the wrong party, or from a party that was not asked (or answered twice)."""


class ProtocolAbort(ProtocolError):
    """A protocol round cannot complete safely (e.g. fewer live parties than the threshold).

    The round is abandoned; the global model and the privacy ledger stay as they were.
    """


class DecryptionError(PrivflError):
    """Authenticated decryption failed. Deliberately says nothing about which check failed."""


class BudgetExceededError(PrivflError):
    """Running the next release would spend more privacy budget than configured."""


class AccountingError(PrivflError):
    """A privacy accounting computation is impossible or unsupported for these parameters."""


class CheckpointError(PrivflError):
    """A checkpoint file is missing, corrupt, or does not match the run being resumed."""


class AuthenticationError(ProtocolAbort):
    """A signature, tag or pinned key did not verify: a forged or substituted key, a roster not
    signed by the pinned operator, or parties shown different views of one round.

    The refusing party reveals nothing further in the round.
    """


class MissingExtraError(PrivflError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
