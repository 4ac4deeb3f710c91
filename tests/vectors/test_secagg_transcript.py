"""Known-answer transcript of one full active-server SecAgg+ round (tests/vectors/secagg_round.json).

Every message of the round is compared digest by digest with the committed transcript,
so any change to a message's content, order or encoding, or a random draw that escapes
the injected entropy, shows up here with the first differing message named.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from privfl.secagg.config import RoundParams

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("privfl_secagg_round", HERE / "secagg_round.py")
assert _spec is not None and _spec.loader is not None
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

COMMITTED = json.loads(generate.FILE.read_text())


def first_mismatch(expected: list[dict], got: list[dict]) -> str | None:
    """The first message where two transcripts differ, named by index, stage, source and destination."""
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            return f"message {i} ({want['stage']}, {want['src']} -> {want['dst']}): expected {want}, got {have}"
    if len(expected) != len(got):
        return f"{len(expected)} messages expected, {len(got)} sent"
    return None


def test_the_round_reproduces_the_committed_transcript_byte_for_byte() -> None:
    streams: dict[int, generate.CounterStream] = {}

    def entropy(node: int) -> generate.CounterStream:
        streams[node] = generate.deterministic(node)
        return streams[node]

    got = generate.run(entropy)
    mismatch = first_mismatch(COMMITTED["messages"], got["messages"])
    assert mismatch is None, mismatch
    assert got == COMMITTED
    # Each client drew exactly the committed number of bytes, and only from its stream: two
    # X25519 key pairs, b_u, 2 (t - 1) Shamir coefficients, one AES-GCM nonce per neighbour,
    # and (survivors only) the quantiser's 32-byte coin key.
    params = RoundParams.from_config(got["params"])
    k, t = params.num_neighbours, params.threshold
    for node, stream in streams.items():
        masked = node in got["survivors"]
        assert stream.drawn == 2 * 32 + 32 + 2 * (t - 1) * 66 + k * 12 + 32 * masked
        assert got["entropy_bytes"][str(node)] == stream.drawn


def test_the_committed_sum_matches_the_inputs() -> None:
    """An independent check of the recorded total: the survivors' weights, and their weighted updates."""
    params = RoundParams.from_config(COMMITTED["params"])
    total = np.frombuffer(bytes.fromhex(COMMITTED["total"]), dtype=COMMITTED["total_dtype"])
    survivors = COMMITTED["survivors"]
    assert survivors == [1, 2, 3, 4] and COMMITTED["dropped"] == {"secagg.masked_input": [5]}
    weights = {u: COMMITTED["inputs"][str(u)]["weight"] for u in survivors}
    assert int(total[-1]) == sum(weights.values())
    updates = {u: np.frombuffer(bytes.fromhex(COMMITTED["inputs"][str(u)]["update"]), "<f4") for u in survivors}
    expected = sum(weights[u] / params.max_weight * updates[u].astype(np.float64) for u in survivors)
    estimate = params.quantizer.dequantize_sum(total[:-1], len(survivors))
    assert np.all(np.abs(estimate - expected) < len(survivors) * params.quantizer.step)


def test_the_generator_still_writes_the_committed_file() -> None:
    assert generate.render() == generate.FILE.read_text()


def test_os_entropy_makes_every_message_that_carries_client_randomness_differ() -> None:
    """With the default entropy (os.urandom) the injection point is not a constant.

    Only the server's setup requests (parameters, node list, signed roster, model digest)
    and consistency requests (the survivor set) carry nothing random; every other message,
    in both directions, depends on the clients' fresh keys, seeds, coefficients, nonces or
    coins.
    """
    one, two = generate.run(), generate.run()
    assert [m | {"sha256": ""} for m in one["messages"]] == [m | {"sha256": ""} for m in two["messages"]]
    for i, (a, b) in enumerate(zip(one["messages"], two["messages"], strict=True)):
        fixed = a["src"] == 0 and a["stage"] in ("secagg.setup", "secagg.consistency")
        assert (a["sha256"] == b["sha256"]) == fixed, f"message {i} ({a['stage']}, {a['src']} -> {a['dst']})"
        if fixed:
            assert a == COMMITTED["messages"][i]
    assert one["entropy_bytes"] == {str(u): None for u in generate.NODES}
