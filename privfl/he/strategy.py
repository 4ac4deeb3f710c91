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

from privfl.core.exchange import ClientResult, Exchange, FitOutcome, Rejection, RoundSpec, check_reply
from privfl.core.message import ArrayDict, Message
from privfl.core.names import NUM_EXAMPLES
from privfl.core.plain import evaluate_exchange, weighted_client_metrics
from privfl.errors import ConfigError, MessageError, ProtocolAbort
from privfl.he.cipher import EncryptedSum
from privfl.he.codec import EncryptedModel, is_encrypted_model, read_ciphertext_arrays
from privfl.he.keys import CkksKeys
from privfl.he.mods import NUM_CLIENTS
from privfl.he.packing import PackLayout, chunk_count


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

    Args:
        keys: the server's keys; must not hold the secret key.
        min_clients: a round with fewer contributing clients is aborted (model kept).
        max_examples: largest ``num_examples`` a client may claim. The server cannot
            see whether a client inflates its count (no cryptographic defence exists
            here), but it bounds how much one client can weigh: at most
            ``max_examples`` times the weight of a one-example client.
    """

    keys: CkksKeys
    min_clients: int = 1
    max_examples: int = 100_000

    def __post_init__(self) -> None:
        if self.keys.has_secret:
            raise ConfigError("HEFedAvg must get the public keys (CkksKeys.public()), not the secret context")
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
                num_examples = self._num_examples(reply)
                total.add(read_ciphertext_arrays(reply.arrays, self.keys.key_id, count))
            except MessageError as exc:
                rejected.append(Rejection(reply.metadata.src_node, reply.metadata.stage, f"MessageError: {exc}"))
                continue
            weight += num_examples
            results.append(ClientResult(node, num_examples, dict(reply.metrics)))
        if len(results) < self.min_clients:
            raise ProtocolAbort(
                f"round {spec.server_round}: {len(results)} client(s) contributed, need at least {self.min_clients} "
                f"({len(rejected)} rejected)"
            )
        model = EncryptedModel(layout, self.keys.key_id, float(weight), tuple(total.serialize()))
        contributed = {r.node_id for r in results}
        return FitOutcome(
            parameters=model.to_arrays(),
            num_clients=len(results),
            dropped=tuple(n for n in spec.nodes if n not in contributed),
            metrics=weighted_client_metrics([(r.num_examples, r.metrics) for r in results]),
            rejected=tuple(rejected),
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
