"""An explicit synchronisation point for the kill-and-resume tests (no sleeps, no timing).

A job's clients call :func:`hold_in_round` first thing in ``fit``. In ``kill_round`` the
first client to train says so on stdout and then blocks until it is killed, so the
parent's SIGKILL (:func:`kill_mid_round`) lands inside that round, after round
``kill_round - 1`` was checkpointed: by construction, on any machine load.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

READY = "privfl-test: inside round"


def hold_in_round(config: Mapping[str, object], kill_round: int) -> None:
    """Block forever if this is round ``kill_round`` (after announcing it on stdout)."""
    if kill_round and int(config.get("server_round", 0)) == kill_round:  # type: ignore[call-overload]
        print(f"{READY} {kill_round}", flush=True)
        threading.Event().wait()


def holding(client_fn: Callable[[int], Any], kill_round: int) -> Callable[[int], Any]:
    """``client_fn`` whose clients call :func:`hold_in_round` before they train."""

    def make(node_id: int) -> Any:
        client = client_fn(node_id)
        fit = client.fit

        def held_fit(parameters: Any, config: Mapping[str, object]) -> Any:
            hold_in_round(config, kill_round)
            return fit(parameters, config)

        client.fit = held_fit
        return client

    return make


def kill_mid_round(args: Sequence[str], env: Mapping[str, str], kill_round: int) -> None:
    """Run ``python args...``, SIGKILL it once a client is inside ``kill_round``, and check it died of that."""
    proc = subprocess.Popen([sys.executable, *args], env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
        if line != f"{READY} {kill_round}":
            proc.wait(timeout=60)
            raise AssertionError(f"job never reached round {kill_round}: {line!r} {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
