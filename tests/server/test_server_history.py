"""History: per-round records, series, and a JSON/checkpoint round trip."""

from __future__ import annotations

import json
from pathlib import Path

from privfl.server.checkpoint import load_checkpoint, save_checkpoint
from privfl.server.history import History, RoundRecord


def history() -> History:
    return History(
        rounds=[
            RoundRecord(1, num_sampled=5, num_clients=4, fit={"loss": 1.0}, evaluate={"accuracy": 0.5}, bytes_up=10),
            RoundRecord(2, status="aborted", num_sampled=5, note="ProtocolAbort: too few"),
            RoundRecord(3, num_sampled=5, num_clients=5, evaluate={"accuracy": 0.75}, centralized={"accuracy": 0.8}),
        ]
    )


def test_series_and_last() -> None:
    h = history()
    assert h.series("evaluate", "accuracy") == [(1, 0.5), (3, 0.75)]
    assert h.series("fit", "loss") == [(1, 1.0)]
    assert h.series("centralized", "loss") == []
    assert h.last("evaluate", "accuracy") == 0.75
    assert h.last("centralized", "loss") is None
    assert History().last("fit", "loss") is None


def test_to_dict_is_json_and_round_trips() -> None:
    h = history()
    data = json.loads(json.dumps(h.to_dict()))
    assert History.from_dict(data) == h
    assert data["rounds"][1]["status"] == "aborted"
    assert History.from_dict({}) == History()


def test_to_dict_is_a_copy() -> None:
    h = history()
    d = h.to_dict()
    d["rounds"][0]["status"] = "changed"
    assert h.rounds[0].status == "ok"


def test_history_survives_a_checkpoint(tmp_path: Path) -> None:
    h = history()
    save_checkpoint(tmp_path / "c.npz", {"history": h.to_dict()})
    assert History.from_dict(load_checkpoint(tmp_path / "c.npz")["history"]) == h
