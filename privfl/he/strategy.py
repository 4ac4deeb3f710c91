"""Server side of CKKS aggregation: FedAvg over encrypted, client-weighted models.

The server never holds a plaintext update or model after the first round: the
global model it keeps and sends is an :class:`~privfl.he.codec.EncryptedModel`
(the encrypted sum of ``num_examples * parameters`` plus the total example count).
What the server does see: each client's example count and training metrics (reply
metadata, as in plain FedAvg), the public layout, and ciphertext sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from privfl.core.exchange import ClientResult, Exchange, FitOutcome, Rejection, RoundSpec, check_reply
from privfl.core.message import SERVER_NODE_ID, ArrayDict, Message
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import evaluate_exchange, weighted_client_metrics
from privfl.errors import ConfigError, MessageError, ProtocolAbort, ProtocolError
from privfl.he.cipher import EncryptedSum
from privfl.he.codec import KEY_ID, EncryptedModel, ciphertext_arrays, is_encrypted_model, read_ciphertext_arrays
from privfl.he.committee import DECRYPT_STAGE, SIGNERS, CommitteeConfig, combine, read_partials
from privfl.he.keys import CkksKeys
from privfl.he.mods import NUM_CLIENTS
from privfl.he.packing import PackLayout, chunk_count, unpack


@dataclass
class HEFedAvg:
    """Federated averaging with CKKS-encrypted aggregation (clients run :class:`~privfl.he.mods.CkksClientMod`).

    Each round the server sends the current model (plaintext initial parameters in
    round 1, the encrypted model afterwards), streams the replies into an
    :class:`~privfl.he.cipher.EncryptedSum` one client at a time, and returns the new
    encrypted model. The new model is the example-weighted mean of the clients'
    models (server learning rate 1). Centralised evaluation needs a key holder:
    decrypt with :func:`~privfl.he.mods.decrypt_model`.

    A reply that fails validation (routing, example count, key id, digest, any
    ciphertext check, an error while adding) is a dropout: it is left out of the sum,
    which is rolled back to what it was, and recorded in ``FitOutcome.rejected``.

    Committee mode (``committee`` set, :mod:`privfl.he.committee`): clients encrypt
    under the committee's joint public key; after the sum, the server asks the
    members (nodes ``committee_nodes[i - 1]``) for smudged partial decryptions and
    combines them into the released, rounded aggregate, which becomes the next
    (plaintext) model. If a signer does not answer, the request is repeated once
    with the members that did, provided at least ``threshold`` remain.

    Args:
        keys: the server's keys (committee mode: the joint public keys); no secret key.
        min_clients: a round with fewer contributing clients is aborted (model kept).
        committee: the committee's configuration, for committee mode.
        committee_nodes: node id of each member, in member order.
        max_examples: largest ``num_examples`` a client may claim. The server cannot
            see whether a client inflates its count (no cryptographic defence exists
            here), but it bounds how much one client can weigh: at most
            ``max_examples`` times the weight of a one-example client.
    """

    keys: CkksKeys
    min_clients: int = 1
    max_examples: int = 100_000
    committee: CommitteeConfig | None = None
    committee_nodes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.keys.has_secret:
            raise ConfigError("HEFedAvg must get the public keys (CkksKeys.public()), not the secret context")
        if self.committee is not None:
            nodes = tuple(self.committee_nodes)
            if len(nodes) != self.committee.members or len(set(nodes)) != len(nodes):
                raise ConfigError(f"committee_nodes must name {self.committee.members} distinct nodes, got {nodes}")
            if self.committee.params != self.keys.params:
                raise ConfigError("the committee's parameter set differs from the keys'")
        elif self.committee_nodes:
            raise ConfigError("committee_nodes given without a committee")
        if self.min_clients < 1:
            raise ConfigError(f"min_clients must be >= 1, got {self.min_clients}")
        if isinstance(self.max_examples, bool) or not isinstance(self.max_examples, int) or self.max_examples < 1:
            raise ConfigError(f"max_examples must be a positive int, got {self.max_examples!r}")

    def _layout(self, parameters: ArrayDict) -> PackLayout:
        if is_encrypted_model(parameters):
            return EncryptedModel.from_arrays(parameters, self.keys.key_id, self.keys.params.slots).layout
        return PackLayout.of(parameters)

    def fit_round(self, spec: RoundSpec) -> Exchange[FitOutcome]:
        layout = self._layout(spec.parameters)
        config = {**spec.config, NUM_CLIENTS: len(spec.nodes)}
        replies = yield [spec.message_to(node, config=config) for node in spec.nodes]
        total = EncryptedSum(self.keys, layout.num_values)
        count = chunk_count(layout.num_values, self.keys.params.slots)
        weight = 0
        results: list[ClientResult] = []
        rejected: list[Rejection] = []
        seen: set[int] = set()
        for reply in replies:
            try:
                node = check_reply(reply, spec, seen)
                if KEY_ID not in reply.arrays:
                    raise MessageError(
                        f"node {node} replied with plaintext arrays {sorted(reply.arrays)[:4]}, not CKKS "
                        "ciphertexts: under HEFedAvg every client app needs CkksClientMod(keys) in its mods"
                    )
                num_examples = self._num_examples(reply)
                total.add(read_ciphertext_arrays(reply.arrays, self.keys.key_id, count))
            except (MessageError, ProtocolError) as exc:  # invalid or misrouted: the sender is a dropout
                rejected.append(Rejection.of(reply, reply.metadata.stage, exc))
                continue
            weight += num_examples
            results.append(ClientResult(node, num_examples, dict(reply.metrics)))
        if len(results) < self.min_clients:
            raise ProtocolAbort(
                f"round {spec.server_round}: {len(results)} client(s) contributed, need at least {self.min_clients} "
                f"({len(rejected)} rejected" + (f"; first: {rejected[0].reason})" if rejected else ")")
            )
        if self.committee is None:
            parameters = EncryptedModel(layout, self.keys.key_id, float(weight), tuple(total.serialize())).to_arrays()
        else:
            released = yield from self._committee_decrypt(
                self.committee, spec, total.serialize(), layout.num_values, results, rejected
            )
            parameters = unpack(layout, released / weight)
        contributed = {r.node_id for r in results}
        return FitOutcome(
            parameters=parameters,
            num_clients=len(results),
            dropped=tuple(n for n in spec.nodes if n not in contributed),
            metrics=weighted_client_metrics([(r.num_examples, r.metrics) for r in results]),
            rejected=tuple(rejected),
        )

    def _committee_decrypt(
        self,
        config: CommitteeConfig,
        spec: RoundSpec,
        ciphertexts: list[bytes],
        num_values: int,
        results: list[ClientResult],
        rejected: list[Rejection],
    ) -> Exchange[np.ndarray]:
        """Ask the members for partial decryptions of the sum; the released (rounded) sum."""
        node_of = dict(enumerate(self.committee_nodes, start=1))
        index_of = {node: i for i, node in node_of.items()}
        content = ciphertext_arrays(self.keys.key_id, ciphertexts)
        signers = sorted(node_of)
        for _attempt in range(2):
            if len(signers) < config.threshold:
                break
            request = {**content, SIGNERS: np.array(signers, dtype=np.int64)}
            replies = yield [spec.message_to(node_of[i], stage=DECRYPT_STAGE, arrays=request) for i in signers]
            partials: dict[int, list[np.ndarray]] = {}
            for reply in replies:
                md = reply.metadata
                try:
                    if (md.run_id, md.server_round, md.stage) != (spec.run_id, spec.server_round, DECRYPT_STAGE):
                        raise ProtocolError(f"reply for run {md.run_id} round {md.server_round} stage {md.stage!r}")
                    index = index_of.get(md.src_node)
                    if index not in signers or index in partials or md.dst_node != SERVER_NODE_ID:
                        raise ProtocolError(f"unexpected or duplicate partial decryption from node {md.src_node}")
                    partials[index] = read_partials(reply.arrays, len(ciphertexts))
                except (MessageError, ProtocolError) as exc:
                    rejected.append(Rejection.of(reply, md.stage, exc))
            if set(partials) == set(signers):
                try:
                    return combine(config, ciphertexts, partials, num_values, summands=len(results))
                except MessageError as exc:
                    raise ProtocolAbort(
                        f"round {spec.server_round}: the committee's decryption failed: {exc}"
                    ) from None
            signers = sorted(partials)
        raise ProtocolAbort(
            f"round {spec.server_round}: only {len(signers)} committee member(s) answered, "
            f"{config.threshold} needed to decrypt"
        )

    def _num_examples(self, reply: Message) -> int:
        num_examples = reply.metrics.get(NUM_EXAMPLES)
        if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
            raise MessageError(f"{NUM_EXAMPLES} must be a positive int, got {num_examples!r}")
        if num_examples > self.max_examples:
            raise MessageError(f"{NUM_EXAMPLES} = {num_examples} exceeds the server's cap of {self.max_examples}")
        return num_examples

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]:
        return evaluate_exchange(spec)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
