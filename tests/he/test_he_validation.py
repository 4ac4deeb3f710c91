"""Validation before use: every ciphertext check, the encode ceiling, hostile layouts and weights, and dropouts."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from privfl.client.app import ClientApp
from privfl.client.numpy_client import NumPyClient
from privfl.core.exchange import RoundSpec, SamplingInfo
from privfl.errors import ConfigError, MessageError
from privfl.he import CkksClientMod, EncryptedModel, EncryptedSum, HEFedAvg, PackLayout, _proto, decrypt_model
from privfl.he.codec import LAYOUT, WEIGHT, ciphertext_arrays
from privfl.he.ring import ring
from privfl.server.transport import InProcessClients, drive

SLOTS = 4096


def _reframe(params, blob, *, scale=None, ntt=True, extra_poly=False):
    """``blob`` with its SEAL ciphertext rewritten (internal scale, NTT flag, size); the wrapper scale kept."""
    sizes, cts, wrapper_scale = _proto.read_ckks_vector_proto(blob)
    r = ring(params)
    polys = r.read(r.load(cts[0]))
    if extra_poly:
        polys = np.concatenate([polys, polys[1:]])
    seal = r.save(r.ciphertext(polys, ntt=ntt, scale=params.scale if scale is None else scale))
    return _proto.ckks_vector_proto(sizes[0], seal, wrapper_scale)


@pytest.mark.parametrize(
    "change",
    [
        {"scale": 2.0**30},  # internal scale differs from the wrapper's
        {"ntt": False},  # wrong form flag
        {"extra_poly": True},  # three polynomials (an unrelinearised product)
    ],
    ids=["scale", "form", "size"],
)
def test_a_malformed_second_ciphertext_is_refused_and_the_sum_rolled_back(keys, server_keys, cipher, change):
    total = EncryptedSum(server_keys, 2 * SLOTS)
    rng = np.random.default_rng(0)
    total.add(cipher.encrypt(rng.normal(size=2 * SLOTS)))
    before = total.serialize()
    bad = cipher.encrypt(rng.normal(size=2 * SLOTS))
    bad[1] = _reframe(keys.params, bad[1], **change)
    with pytest.raises(MessageError, match="SEAL ciphertext"):
        total.add(bad)
    assert total.serialize() == before and total.count == 1


def test_the_headroom_is_what_encodes(cipher):
    """SEAL encodes |x| up to 2**18 at scale 2**40 under a 60-bit prime, and the check allows exactly that."""
    p = cipher.params
    assert p.headroom == 2.0**18
    cipher.encrypt(np.full(SLOTS, p.headroom))  # the largest allowed value encodes
    cipher.encrypt(np.full(SLOTS, -p.headroom))
    with pytest.raises(ConfigError, match="headroom"):
        cipher.encrypt(np.full(SLOTS, 3e5))


class _Heavy(NumPyClient):
    def fit(self, parameters, config):
        return [np.ones_like(p) for p in parameters], 300_000, {}


def test_a_weighted_value_of_3e5_with_one_client_is_refused_before_encoding(keys):
    """It passed the old check (2**19) and then raised inside TenSEAL."""
    app = ClientApp(lambda node: _Heavy(), mods=[CkksClientMod(keys)])
    spec = RoundSpec(0, 1, (1,), {"w": np.zeros(3)}, {}, SamplingInfo(1, 1.0, False))
    strategy = HEFedAvg(keys.public(), max_examples=10**6)
    with pytest.raises(Exception, match="headroom") as info:
        drive(strategy.fit_round(spec), InProcessClients(app).deliver)
    assert isinstance(info.value.__cause__, ConfigError)


def _model_arrays(keys, cipher, layout_doc):
    arrays = EncryptedModel(PackLayout.of({"w": np.zeros(4)}), keys.key_id, 1.0, tuple(cipher.encrypt(np.zeros(4))))
    arrays = arrays.to_arrays()
    arrays[LAYOUT] = np.frombuffer(json.dumps(layout_doc).encode(), dtype=np.uint8).copy()
    return arrays


def test_a_tiny_layout_declaring_5e7_chunks_is_refused_in_milliseconds(keys, cipher):
    doc = {"names": ["w"], "shapes": [[50_000_000 * SLOTS]], "dtypes": ["<f4"]}
    arrays = _model_arrays(keys, cipher, doc)
    assert arrays[LAYOUT].size < 120
    start = time.perf_counter()
    with pytest.raises(MessageError, match="holds 1"):
        decrypt_model(arrays, cipher)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**62, 2**62, 4], [2**64]])
def test_a_layout_whose_shape_product_overflows_is_refused(keys, cipher, shape):
    arrays = _model_arrays(keys, cipher, {"names": ["w"], "shapes": [shape], "dtypes": ["<f4"]})
    with pytest.raises(MessageError, match="layout"):
        decrypt_model(arrays, cipher)


@pytest.mark.parametrize("weight", [1e-300, 0.5, 1.5, np.inf, np.nan, -1.0, 2.0**60])
def test_non_finite_tiny_or_fractional_weights_are_refused(keys, cipher, weight):
    arrays = _model_arrays(keys, cipher, json.loads(PackLayout.of({"w": np.zeros(4)}).to_json()))
    arrays[WEIGHT] = np.array([weight])
    with pytest.raises(MessageError, match="weight"):
        decrypt_model(arrays, cipher)


def _one_round(keys, app, nodes=(1, 2, 3, 4), **kwargs):
    spec = RoundSpec(0, 1, nodes, {"w": np.zeros(4)}, {}, SamplingInfo(len(nodes), 1.0, False))
    clients = InProcessClients(app, on_client_error="drop")
    return drive(HEFedAvg(keys.public(), **kwargs).fit_round(spec), clients.deliver)


@pytest.mark.parametrize(("claimed", "reason"), [(0, "positive"), (1001, "cap"), (True, "positive"), (2.5, "int")])
def test_the_server_refuses_bad_example_counts_as_recorded_dropouts(keys, cipher, claimed, reason):
    """Inflation: a valid ciphertext with a bogus count. The server caps what it can see and rejects 0."""
    spec = RoundSpec(0, 1, (1, 2), {"w": np.zeros(4)}, {}, SamplingInfo(2, 1.0, False))
    exchange = HEFedAvg(keys.public(), max_examples=1000).fit_round(spec)
    outbox = next(exchange)
    replies = [
        m.reply(arrays=ciphertext_arrays(keys.key_id, cipher.encrypt(np.ones(4))), metrics={"num_examples": n})
        for m, n in zip(outbox, (claimed, 3), strict=True)
    ]
    with pytest.raises(StopIteration) as stop:
        exchange.send(iter(replies))
    outcome = stop.value.value
    assert outcome.num_clients == 1 and outcome.dropped == (1,)
    (rejection,) = outcome.rejected
    assert rejection.node == 1 and reason in rejection.reason
    assert outcome.metrics["num_examples"] == 3


def test_a_malformed_upload_is_a_dropout_not_a_crash(keys, cipher):
    class Good(NumPyClient):
        def fit(self, parameters, config):
            return [p + 2.0 for p in parameters], 2, {}

    mod = CkksClientMod(keys)

    def app(message, context):
        reply = ClientApp(lambda node: Good(), mods=[mod])(message, context)
        if context.node_id == 2:  # swap in a ciphertext with a wrong internal scale, digest recomputed
            blob = reply.arrays["he.ct.000000"].tobytes()
            return reply.replace(arrays=ciphertext_arrays(keys.key_id, [_reframe(keys.params, blob, scale=2.0**30)]))
        return reply

    outcome = _one_round(keys, app, nodes=(1, 2, 3))
    assert outcome.num_clients == 2 and outcome.dropped == (2,)
    assert outcome.rejected[0].node == 2 and "scale" in outcome.rejected[0].reason
    model = decrypt_model(outcome.parameters, cipher)["w"]
    np.testing.assert_allclose(model, 2.0, atol=1e-4)  # the rejected upload left no trace in the sum
