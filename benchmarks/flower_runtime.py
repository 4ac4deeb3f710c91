"""privfl's vs Flower's SecAgg+ on Flower's deployment runtime: one SuperLink, 3 SuperNodes, d = 10^5, one run.

Both implementations run in the same Flower app (``benchmarks/flower_deploy_app``),
on the same SuperLink and SuperNodes started once by
:class:`~privfl.integrations.flower.local.LocalDeployment`, one after the other: Flower's
``FedAvg`` under ``DefaultWorkflow`` with a SecAgg+ fit workflow and client mod that
are either privfl's (``impl=privfl``) or Flower's (``impl=flower``). Every ClientApp
message runs in a fresh ``flwr-clientapp`` process, so the times include Flower's
per-message process start (the same for both). Round 1 and round 2 are reported
separately; the final models must agree within the quantisation error.

    .venv/bin/python benchmarks/flower_runtime.py [--nodes 3] [--dim 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from privfl.integrations.flower.local import LocalDeployment

APP = Path(__file__).resolve().parent / "flower_deploy_app"


def run(deployment: LocalDeployment, impl: str, dim: int, rounds: int, workdir: Path) -> dict:
    result = workdir / f"{impl}.json"
    proc = deployment.run(APP, {"impl": impl, "dim": dim, "num-rounds": rounds, "result-path": str(result)})
    deployment.wait(proc, timeout=3600)  # raises unless the run finished:completed
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="privfl-flower-bench-") as tmp:
        workdir = Path(tmp)
        env = {"PRIVFL_STATE_DIR": str(workdir / "node-keys")}
        with LocalDeployment(workdir / "deploy", args.nodes, env=env) as deployment:
            results = {impl: run(deployment, impl, args.dim, args.rounds, workdir) for impl in ("privfl", "flower")}
    print(f"SecAgg+ on Flower's deployment runtime: {args.nodes} SuperNodes, d = {args.dim}, one run")
    print(f"{'round':>5}  {'privfl (s)':>10}  {'Flower (s)':>10}  {'Flower / privfl':>15}")
    rounds = zip(results["privfl"]["seconds"], results["flower"]["seconds"], strict=True)
    for rnd, (ours, theirs) in enumerate(rounds, start=1):
        print(f"{rnd:>5}  {ours:>10.1f}  {theirs:>10.1f}  {theirs / ours:>15.2f}")
    gap = float(np.max(np.abs(np.array(results["privfl"]["model"]) - np.array(results["flower"]["model"]))))
    print(f"largest difference between the two final models: {gap:.2e}")


if __name__ == "__main__":
    main()
