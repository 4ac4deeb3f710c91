"""Flower's legacy message layout (``Strategy`` / ``Client`` era, ``fitins.*`` records), read and written.

Flower's ``DefaultWorkflow`` and ``ClientApp(client_fn=...)`` exchange train messages
as ``fitins.parameters`` / ``fitins.config`` and replies as ``fitres.parameters``,
``fitres.num_examples``, ``fitres.metrics``, ``fitres.status`` (evaluate likewise with
``evaluateins`` / ``evaluateres``). This module turns them into privfl messages and
back. Arrays are decoded with privfl's size-checked ``.npy`` parser (never pickle).
Legacy metrics may hold strings, bytes and bools: those travel in the privfl
message's config, numbers in its metrics (as :class:`privfl.client.ClientApp` does).
"""

from __future__ import annotations

import numpy as np
from flwr.app import RecordDict
from flwr.common import Code, EvaluateIns, EvaluateRes, FitIns, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from privfl.core.message import Config, Message, MessageKind, Metadata, Metrics
from privfl.core.names import LOSS, NUM_EXAMPLES
from privfl.errors import MessageError
from privfl.integrations.flower.convert import decode_npy

_INS = {MessageKind.TRAIN: "fitins", MessageKind.EVALUATE: "evaluateins"}
_RES = {MessageKind.TRAIN: "fitres", MessageKind.EVALUATE: "evaluateres"}
LEGACY_PREFIXES = frozenset({*_INS.values(), *_RES.values(), "getparametersins", "getpropertiesins"})


def is_legacy(content: RecordDict) -> bool:
    """Whether ``content`` uses Flower's legacy layout (``fitins.parameters`` and friends)."""
    return any(name.split(".", 1)[0] in LEGACY_PREFIXES for name in content)


def _split(values: dict, who: str) -> tuple[Metrics, Config]:
    metrics: Metrics = {}
    config: Config = {}
    for key, value in values.items():
        if isinstance(value, (str, bytes, bool)):
            config[key] = value
        elif isinstance(value, (int, float)):
            metrics[key] = value
        else:
            raise MessageError(f"{who}: metric {key!r} has unsupported type {type(value).__name__}")
    return metrics, config


def _arrays(record) -> list[tuple[str, np.ndarray]]:
    # Flower writes an empty parameter list as one empty entry named "_empty".
    return [(name, decode_npy(a.data, name)) for name, a in record.items() if not (name == "_empty" and not a.data)]


def read_request(content: RecordDict, kind: MessageKind, metadata: Metadata) -> Message:
    """The privfl message of a legacy train or evaluate instruction (arrays named ``"0"``, ``"1"``, ...)."""
    prefix = _INS.get(kind)
    if prefix is None or f"{prefix}.parameters" not in content.array_records:
        raise MessageError(f"legacy Flower {kind.value} message lacks '{prefix}.parameters'")
    record = content.array_records[f"{prefix}.parameters"]
    arrays = dict(_arrays(record))
    config = dict(content.config_records.get(f"{prefix}.config", {}))
    return Message(metadata=metadata, arrays=arrays, config=config)


def write_request(request: Message) -> RecordDict:
    """Legacy content for ``request`` (a train or evaluate instruction; array names become order)."""
    parameters = ndarrays_to_parameters(list(request.arrays.values()))
    config = dict(request.config)
    if request.metadata.kind is MessageKind.TRAIN:
        return compat.fitins_to_recorddict(FitIns(parameters, config), keep_input=True)
    if request.metadata.kind is MessageKind.EVALUATE:
        return compat.evaluateins_to_recorddict(EvaluateIns(parameters, config), keep_input=True)
    raise MessageError(f"no legacy Flower layout for a {request.metadata.kind.value} message")


def has_reply(content: RecordDict, kind: MessageKind) -> bool:
    prefix = _RES.get(kind)
    return prefix is not None and f"{prefix}.status" in content.config_records


def read_reply(content: RecordDict, request: Message) -> Message:
    """The privfl reply to ``request`` held by a legacy ``fitres`` / ``evaluateres`` content."""
    kind = request.metadata.kind
    prefix = _RES[kind]
    status = content.config_records[f"{prefix}.status"]
    if status.get("code") != Code.OK.value:
        raise MessageError(f"the Flower client replied with status {status.get('code')}: {status.get('message')}")
    metrics, config = _split(dict(content.config_records.get(f"{prefix}.metrics", {})), "Flower client")
    counts = content.metric_records.get(f"{prefix}.num_examples", {})
    metrics[NUM_EXAMPLES] = int(counts.get("num_examples", 0))
    arrays: dict[str, np.ndarray] = {}
    if kind is MessageKind.TRAIN:
        record = content.array_records.get(f"{prefix}.parameters", {})
        values = [value for _, value in _arrays(record)]
        names = list(request.arrays) if len(values) == len(request.arrays) else [str(i) for i in range(len(values))]
        arrays = dict(zip(names, values, strict=True))
    else:
        metrics[LOSS] = float(content.metric_records[f"{prefix}.loss"]["loss"])
    return request.reply(arrays=arrays, metrics=metrics, config=config)


def write_reply(reply: Message) -> RecordDict:
    """Legacy content for a privfl reply (``num_examples`` and ``loss`` move to their legacy fields)."""
    metrics = {**reply.metrics, **reply.config}
    num_examples = int(metrics.pop(NUM_EXAMPLES, 0))
    ok = Status(Code.OK, "Success")
    if reply.metadata.kind is MessageKind.TRAIN:
        parameters = ndarrays_to_parameters(list(reply.arrays.values()))
        return compat.fitres_to_recorddict(FitRes(ok, parameters, num_examples, metrics), keep_input=True)
    loss = float(metrics.pop(LOSS, 0.0))
    return compat.evaluateres_to_recorddict(EvaluateRes(ok, loss, num_examples, metrics))
