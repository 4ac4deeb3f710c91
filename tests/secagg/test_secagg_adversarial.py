"""A malicious server replaying an old round against honest SecAgg+ clients.

The survivor-set attacks (a survivor claimed dropped, split views, a second set) are
in tests/secagg/test_active_server.py and the audit suite (tests/audit).
"""

from __future__ import annotations

import numpy as np
import pytest
from secagg_helpers import run_to

from privfl.errors import DecryptionError, ProtocolError
from privfl.secagg import SecAggConfig
from privfl.secagg import protocol as p
from privfl.server.transport import drive


@pytest.mark.parametrize("active", [True, False])
def test_replayed_old_round_gets_no_answer(make_harness, active: bool) -> None:
    h = make_harness(6, 5, SecAggConfig(num_neighbours=4, threshold=3), active=active)
    recorded = {}

    def recording(outbox):
        recorded.update({(m.metadata.stage, m.metadata.dst_node): m for m in outbox})
        yield from h.deliver(outbox)

    drive(h.exchange(1), recording)
    node = 1
    unmask = recorded[(p.STAGE_UNMASK, node)]
    first = h.send(unmask)  # identical retransmission: the cached answer
    assert all(np.array_equal(first.arrays[k], v) for k, v in h.send(unmask).arrays.items())
    # After the round: every earlier stage is refused.
    for stage in (p.STAGE_SETUP, p.STAGE_SHARE_KEYS, p.STAGE_MASKED_INPUT):
        with pytest.raises(ProtocolError):
            h.send(recorded[(stage, node)])
    # In round 2, round-1 messages are refused, and round-1 ciphertexts relabelled as round 2 fail AEAD.
    current = next(m for m in run_to(h.exchange(2), h.deliver, p.STAGE_MASKED_INPUT) if m.metadata.dst_node == node)
    stale = recorded[(p.STAGE_MASKED_INPUT, node)]
    with pytest.raises(ProtocolError):
        h.send(stale)
    forged = {
        **current.arrays,
        p.CIPHERTEXTS: np.resize(stale.arrays[p.CIPHERTEXTS], current.arrays[p.CIPHERTEXTS].shape),
    }
    with pytest.raises(DecryptionError):
        h.send(current.replace(arrays=forged))
