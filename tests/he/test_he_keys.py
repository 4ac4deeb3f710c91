"""Key roles: the server's context cannot decrypt and holds no Galois or relinearisation keys."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from privfl.errors import ConfigError
from privfl.he import FL_4096, CkksClientMod, CkksKeys, ClientCipher, HEFedAvg


def test_server_keys_hold_no_secret_and_no_evaluation_keys(keys, server_keys):
    assert keys.has_secret and not server_keys.has_secret
    ctx = server_keys.load()
    assert not ctx.has_secret_key()
    assert not ctx.has_galois_keys()
    assert not ctx.has_relin_keys()
    assert keys.secret_key_bytes() not in server_keys.context
    with pytest.raises(ConfigError):
        server_keys.secret_key_bytes()


def test_server_context_cannot_decrypt(cipher, server_keys):
    blob = cipher.encrypt(np.arange(10, dtype=np.float64))[0]
    vector = ts.ckks_vector_from(server_keys.load(), blob)
    with pytest.raises(ValueError, match="secret"):
        vector.decrypt()
    public = ClientCipher(server_keys)  # public keys encrypt (committee mode) but cannot decrypt
    with pytest.raises(ConfigError, match="no secret key"):
        public.decrypt([blob], 10, summands=1)


def test_roles_refuse_the_wrong_keys(keys, server_keys, seeded_keys):
    with pytest.raises(ConfigError):
        ClientCipher(seeded_keys.public())  # seeded uploads need the secret key
    with pytest.raises(ConfigError):
        CkksClientMod(server_keys.context)
    with pytest.raises(ConfigError):
        HEFedAvg(keys)


def test_key_id_is_shared_by_roles_and_differs_between_key_holders(keys, server_keys, other_keys):
    assert keys.key_id == server_keys.key_id == CkksKeys(keys.params, keys.context).key_id
    assert len(keys.key_id) == 16
    assert other_keys.key_id != keys.key_id


def test_garbage_or_mismatched_context_is_refused(keys):
    with pytest.raises(ConfigError):
        CkksKeys(keys.params, b"\x0a\x05hello")
    with pytest.raises(ConfigError, match="does not match"):
        CkksKeys(FL_4096, keys.context).load()
