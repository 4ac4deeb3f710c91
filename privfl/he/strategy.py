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

from privfl.core.exchange import ClientResult, Exchange, FitOutcome, RoundSpec
from privfl.core.message import ArrayDict, Message
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import evaluate_exchange, weighted_client_metrics
from privfl.errors import ConfigError, MessageError, ProtocolAbort, ProtocolError
from privfl.he.cipher import EncryptedSum
from privfl.he.codec import EncryptedModel, is_encrypted_model, read_ciphertext_arrays
from privfl.he.keys import CkksKeys
from privfl.he.mods import NUM_CLIENTS
from privfl.he.packing import PackLayout, chunk_sizes


@dataclass
class HEFedAvg:
    """Federated averaging with CKKS-encrypted aggregation (clients run :class:`~privfl.he.mods.CkksClientMod`).

    Each round the server sends the current model (plaintext initial parameters in
    round 1, the encrypted model afterwards), streams the replies into an
    :class:`~privfl.he.cipher.EncryptedSum` one client at a time, and returns the new
    encrypted model. The new model is the example-weighted mean of the clients'
    models (server learning rate 1). Centralised evaluation needs a key holder:
    decrypt with :func:`~privfl.he.mods.decrypt_model`.

    Args:
        keys: the server's keys; must not hold the secret key.
        min_clients: a round with fewer contributing clients is aborted (model kept).
    """

    keys: CkksKeys
    min_clients: int = 1

    def __post_init__(self) -> None:
        if self.keys.has_secret:
            raise ConfigError("HEFedAvg must get the public keys (CkksKeys.public()), not the secret context")
        if self.min_clients < 1:
            raise ConfigError(f"min_clients must be >= 1, got {self.min_clients}")

    def _layout(self, parameters: ArrayDict) -> PackLayout:
        if is_encrypted_model(parameters):
            return EncryptedModel.from_arrays(parameters, self.keys.key_id, self.keys.params.slots).layout
        return PackLayout.of(parameters)

    def fit_round(self, spec: RoundSpec) -> Exchange[FitOutcome]:
        layout = self._layout(spec.parameters)
        config = {**spec.config, NUM_CLIENTS: len(spec.nodes)}
        replies = yield [spec.message_to(node, config=config) for node in spec.nodes]
        total = EncryptedSum(self.keys, layout.num_values)
        count = len(chunk_sizes(layout.num_values, self.keys.params.slots))
        weight = 0
        results: list[ClientResult] = []
        for reply in replies:
            node, num_examples = _check_reply(reply, spec, {r.node_id for r in results})
            total.add(read_ciphertext_arrays(reply.arrays, self.keys.key_id, count))
            weight += num_examples
            results.append(ClientResult(node, num_examples, dict(reply.metrics)))
        if len(results) < self.min_clients or weight <= 0:
            raise ProtocolAbort(
                f"round {spec.server_round}: {len(results)} client(s) contributed (total weight {weight}), "
                f"need at least {self.min_clients} and a positive weight"
            )
        model = EncryptedModel(layout, self.keys.key_id, float(weight), tuple(total.serialize()))
        contributed = {r.node_id for r in results}
        return FitOutcome(
            parameters=model.to_arrays(),
            num_clients=len(results),
            dropped=tuple(n for n in spec.nodes if n not in contributed),
            metrics=weighted_client_metrics([(r.num_examples, r.metrics) for r in results]),
        )

    def evaluate_round(self, spec: RoundSpec) -> Exchange[dict[str, float]]:
        return evaluate_exchange(spec)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def _check_reply(reply: Message, spec: RoundSpec, seen: set[int]) -> tuple[int, int]:
    """Routing and weight of an encrypted fit reply: (node id, number of examples)."""
    md = reply.metadata
    if md.src_node not in spec.nodes or md.src_node in seen:
        raise ProtocolError(f"unexpected or duplicate reply from node {md.src_node}")
    if md.server_round != spec.server_round or md.run_id != spec.run_id:
        raise ProtocolError(
            f"reply for run {md.run_id} round {md.server_round}, expected {spec.run_id}/{spec.server_round}"
        )
    num_examples = reply.metrics.get(NUM_EXAMPLES)
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 0:
        raise MessageError(f"reply from node {md.src_node}: {NUM_EXAMPLES} must be a non-negative int")
    return md.src_node, num_examples
