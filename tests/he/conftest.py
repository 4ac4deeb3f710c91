from __future__ import annotations

import pytest
import tenseal  # noqa: F401

from privfl.he import FL_8192, FL_8192_SEEDED, CkksKeys, ClientCipher


@pytest.fixture(scope="session")
def keys() -> CkksKeys:
    return CkksKeys.generate(FL_8192)


@pytest.fixture(scope="session")
def server_keys(keys: CkksKeys) -> CkksKeys:
    return keys.public()


@pytest.fixture(scope="session")
def cipher(keys: CkksKeys) -> ClientCipher:
    return ClientCipher(keys)


@pytest.fixture(scope="session")
def seeded_keys() -> CkksKeys:
    return CkksKeys.generate(FL_8192_SEEDED)


@pytest.fixture(scope="session")
def other_keys() -> CkksKeys:
    """Independent keys with the same parameters (a different key holder)."""
    return CkksKeys.generate(FL_8192)
