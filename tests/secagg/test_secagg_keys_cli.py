"""``privfl keys``: node and operator keys, a signed roster, and its verification, as files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from privfl.cli import main
from privfl.errors import AuthenticationError
from privfl.secagg import IdentityKey, SignedRoster


def test_keys_roster_and_verify_round_trip(tmp_path: Path, capsys) -> None:
    for name in ("operator", "node-1", "node-2"):
        assert main(["keys", "new", str(tmp_path / f"{name}.pem")]) == 0
    assert stat.S_IMODE((tmp_path / "node-1.pem").stat().st_mode) == 0o600
    argv = ["keys", "roster", "--operator", str(tmp_path / "operator.pem"), "--corruption", "0.05"]
    argv += ["--node", f"1={tmp_path / 'node-1.pem.pub'}", "--node", f"2={tmp_path / 'node-2.pem.pub'}"]
    assert main([*argv, "--out", str(tmp_path / "roster.json")]) == 0
    operator_pub = tmp_path / "operator.pem.pub"
    assert main(["keys", "verify", str(tmp_path / "roster.json"), "--operator-key", str(operator_pub)]) == 0
    assert "valid signature; 2 nodes, corruption 0.05" in capsys.readouterr().out
    data = json.loads((tmp_path / "roster.json").read_text())
    assert data["format"] == "privfl-roster/v1" and set(data["roster"]["keys"]) == {"1", "2"}
    node = IdentityKey.load(tmp_path / "node-1.pem")
    assert data["roster"]["keys"]["1"] == node.public.hex()


def test_a_tampered_roster_or_another_operator_fails_verification(tmp_path: Path, capsys) -> None:
    main(["keys", "new", str(tmp_path / "op.pem")])
    main(["keys", "new", str(tmp_path / "n.pem")])
    main(
        [
            "keys",
            "roster",
            "--operator",
            str(tmp_path / "op.pem"),
            "--corruption",
            "0.1",
            "--node",
            f"3={tmp_path / 'n.pem.pub'}",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    data = json.loads((tmp_path / "r.json").read_text())
    data["roster"]["corruption"] = 0.0  # a server lowering the declared corruption
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(AuthenticationError):
        SignedRoster.load(tmp_path / "r.json").verify(IdentityKey.load(tmp_path / "op.pem").public)
    assert main(["keys", "verify", str(tmp_path / "r.json"), "--operator-key", str(tmp_path / "op.pem.pub")]) == 2
    assert "invalid signature" in capsys.readouterr().err
    assert main(["keys", "new", str(tmp_path / "op.pem")]) == 2  # no silent overwrite of a key
