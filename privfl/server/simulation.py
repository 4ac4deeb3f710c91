"""The bundled FL loop: N simulated clients, one process (or a process pool), no server to start.

Each round: sample clients, run the strategy's fit exchange (every message
crosses the wire codec, bytes are counted), optionally evaluate, record the
round, and checkpoint atomically. A round that aborts (too few clients, a
protocol abort, an invalid message) leaves the global model and every piece of
strategy state, privacy ledger included, exactly as before the round. A round
that would overspend a privacy budget stops the run before anything is sent.
"""

from __future__ import annotations

import copy
import re
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from privfl.core.exchange import RoundSpec, Strategy
from privfl.core.message import ArrayDict, Config, MessageKind, as_array_dict
from privfl.core.mods import App
from privfl.core.wire import DEFAULT_LIMITS, WireLimits
from privfl.errors import BudgetExceededError, CheckpointError, ConfigError, MessageError, ProtocolError
from privfl.server.checkpoint import load_checkpoint, save_checkpoint
from privfl.server.failures import FailurePlan
from privfl.server.history import History, RoundRecord
from privfl.server.sampling import FixedFractionSampler, Sampler
from privfl.server.strategy import FedAvg
from privfl.server.transport import InProcessClients, ProcessPoolClients, Transport, drive

CentralizedEvaluate = Callable[[int, ArrayDict], dict[str, float]]
"""``(server_round, parameters) -> metrics`` evaluated by the server on held-out data."""


@dataclass
class SimulationResult:
    """Outcome of :func:`run_simulation`.

    Attributes:
        parameters: final global model.
        history: per-round records.
        strategy: the strategy, with its final state (e.g. a DP wrapper's ledger).
        stopped: why the run ended early (``""`` if it ran every round).
    """

    parameters: ArrayDict
    history: History
    strategy: Strategy
    stopped: str = ""


ABORTS_BEFORE_STOP = 3
"""A run stops after this many consecutive rounds aborted with the same error (numbers aside, such
as the round): it is misconfigured (e.g. clients without the mod the strategy needs) or its
population cannot run the protocol, and more rounds would only repeat the abort."""


def _round_rng(seed: int, server_round: int, purpose: int) -> np.random.Generator:
    # Independent stream per (round, purpose): a resumed run draws what the uninterrupted one drew.
    return np.random.default_rng([seed, server_round, purpose])


def run_simulation(
    client_app: App,
    *,
    num_clients: int,
    num_rounds: int,
    initial_parameters: ArrayDict | Sequence[np.ndarray],
    strategy: Strategy | None = None,
    sampler: Sampler | None = None,
    fit_config: Config | None = None,
    centralized_evaluate: CentralizedEvaluate | None = None,
    evaluate_fraction: float = 0.0,
    failures: FailurePlan | None = None,
    seed: int | None = None,
    run_id: int = 0,
    workers: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[RoundRecord], None]] = (),
    limits: WireLimits = DEFAULT_LIMITS,
) -> SimulationResult:
    """Run federated training of ``client_app`` on simulated clients ``1..num_clients``.

    Args:
        client_app: the client side (a :class:`~privfl.client.app.ClientApp` with its mods).
        num_clients: population size N.
        num_rounds: total rounds (a resumed run continues up to this number).
        initial_parameters: starting global model: named arrays, or a list of arrays as a
            NumPy-style client's ``get_parameters`` returns (named ``"0"``, ``"1"``, ...).
        strategy: server strategy; plain :class:`FedAvg` by default.
        sampler: client sampling per round; all clients by default.
        fit_config: config sent with every training task (``server_round`` is added).
        centralized_evaluate: server-side evaluation after each round.
        evaluate_fraction: fraction of clients asked for federated evaluation each
            round (0 disables it).
        failures: injected client dropouts.
        seed: seed of client sampling. ``None`` draws a 128-bit one from the OS CSPRNG
            (stored in the checkpoint so a resumed run samples identically). Who is
            sampled must stay hidden for DP's amplification by subsampling: leave it
            ``None`` in private runs. The draws are PCG64 streams keyed by the seed:
            unpredictable without it, though PCG64 is not a CSPRNG.
        run_id: id stamped on every message.
        workers: 0 runs clients in this process; k > 0 spreads them over k processes.
        checkpoint: path of the checkpoint file; if it exists the run resumes from it.
        progress: show a progress bar.
        callbacks: called with each round's record after it is checkpointed.
        limits: wire limits for decoding on both sides.
    """
    if num_clients < 1:
        raise ConfigError(f"num_clients must be >= 1, got {num_clients}")
    clients = (
        ProcessPoolClients(client_app, workers, failures=failures, limits=limits)
        if workers > 0
        else InProcessClients(client_app, failures=failures, limits=limits)
    )
    try:
        return run_rounds(
            clients,
            population=tuple(range(1, num_clients + 1)),
            num_rounds=num_rounds,
            initial_parameters=initial_parameters,
            strategy=strategy,
            sampler=sampler,
            fit_config=fit_config,
            centralized_evaluate=centralized_evaluate,
            evaluate_fraction=evaluate_fraction,
            seed=seed,
            run_id=run_id,
            checkpoint=checkpoint,
            progress=progress,
            callbacks=callbacks,
        )
    finally:
        clients.close()


def run_rounds(
    clients: Transport,
    *,
    population: tuple[int, ...],
    num_rounds: int,
    initial_parameters: ArrayDict | Sequence[np.ndarray],
    strategy: Strategy | None = None,
    sampler: Sampler | None = None,
    fit_config: Config | None = None,
    centralized_evaluate: CentralizedEvaluate | None = None,
    evaluate_fraction: float = 0.0,
    seed: int | None = None,
    run_id: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[RoundRecord], None]] = (),
) -> SimulationResult:
    """The round loop over any :class:`~privfl.server.transport.Transport` (simulated clients, Flower's grid).

    Arguments are those of :func:`run_simulation`; ``population`` lists the client node
    ids. The transport is not closed.
    """
    if not population or num_rounds < 0:
        raise ConfigError(f"need a non-empty population and num_rounds >= 0, got {len(population)}, {num_rounds}")
    if not 0.0 <= evaluate_fraction <= 1.0:
        raise ConfigError(f"evaluate_fraction must be in [0, 1], got {evaluate_fraction}")
    strategy = strategy if strategy is not None else FedAvg()
    sampler = sampler if sampler is not None else FixedFractionSampler(1.0)
    parameters = as_array_dict(initial_parameters)
    history = History()
    start_round = 0
    seed = secrets.randbits(128) if seed is None else int(seed)
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        start_round, seed, parameters, history = _restore(state, strategy, clients, len(population), run_id)

    stopped = ""
    repeats, last_kind = 0, ""
    bar = tqdm(total=num_rounds, initial=start_round, desc="rounds", unit="round", disable=not progress, leave=False)
    try:
        for rnd in range(start_round + 1, num_rounds + 1):
            record, new_parameters, stopped = _run_round(
                rnd,
                strategy,
                sampler,
                clients,
                population,
                parameters,
                fit_config,
                seed,
                run_id,
                centralized_evaluate,
                evaluate_fraction,
            )
            if stopped:
                warnings.warn(f"run stopped before round {rnd}: {stopped}", stacklevel=2)
                break
            parameters = new_parameters
            history.rounds.append(record)
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint, _snapshot(rnd, seed, run_id, len(population), parameters, strategy, history, clients)
                )
            bar.update(1)
            acc = record.centralized.get("accuracy", record.evaluate.get("accuracy"))
            if acc is not None:
                bar.set_postfix(accuracy=f"{acc:.3f}")
            for callback in callbacks:
                callback(record)
            if record.status == "aborted":
                warnings.warn(f"round {rnd} aborted: {record.note}", stacklevel=2)
                kind = re.sub(r"\d+", "N", record.note)  # the same error in another round, with other counts
                repeats, last_kind = (repeats + 1 if kind == last_kind else 1), kind
                if repeats >= ABORTS_BEFORE_STOP:
                    stopped = f"{repeats} consecutive rounds aborted with the same error: {record.note}"
                    warnings.warn(f"run stopped after round {rnd}: {stopped}", stacklevel=2)
                    break
            else:
                repeats = 0
    finally:
        bar.close()
    return SimulationResult(parameters=parameters, history=history, strategy=strategy, stopped=stopped)


def _run_round(
    rnd: int,
    strategy: Strategy,
    sampler: Sampler,
    clients: Transport,
    population: tuple[int, ...],
    parameters: ArrayDict,
    fit_config: Config | None,
    seed: int,
    run_id: int,
    centralized_evaluate: CentralizedEvaluate | None,
    evaluate_fraction: float,
) -> tuple[RoundRecord, ArrayDict, str]:
    """One round. Returns (record, new parameters, reason to stop or "")."""
    t0 = time.perf_counter()
    clients.traffic.reset()
    nodes = sampler.sample(population, _round_rng(seed, rnd, 0))
    spec = RoundSpec(
        run_id=run_id,
        server_round=rnd,
        nodes=nodes,
        parameters=parameters,
        config={**(fit_config or {}), "server_round": rnd},
        sampling=sampler.info(len(population)),
    )
    record = RoundRecord(server_round=rnd, num_sampled=len(nodes))
    saved_state = copy.deepcopy(strategy.state_dict())
    try:
        outcome = drive(strategy.fit_round(spec), clients.deliver)
    except BudgetExceededError as exc:
        strategy.load_state_dict(saved_state)
        return record, parameters, str(exc)
    except (ProtocolError, MessageError) as exc:
        # Abort: model and all strategy state (ledger included) stay as they were.
        strategy.load_state_dict(saved_state)
        record.status, record.note = "aborted", f"{type(exc).__name__}: {exc}"
        new_parameters = parameters
    else:
        new_parameters = outcome.parameters
        record.num_clients = outcome.num_clients
        record.fit = dict(outcome.metrics)
        record.rejected = [asdict(r) for r in outcome.rejected]
    if evaluate_fraction > 0:
        eval_nodes = FixedFractionSampler(evaluate_fraction).sample(population, _round_rng(seed, rnd, 1))
        eval_spec = RoundSpec(
            run_id=run_id,
            server_round=rnd,
            nodes=eval_nodes,
            parameters=new_parameters,
            config={"server_round": rnd},
            sampling=FixedFractionSampler(evaluate_fraction).info(len(population)),
            kind=MessageKind.EVALUATE,
        )
        record.evaluate = drive(strategy.evaluate_round(eval_spec), clients.deliver)
    if centralized_evaluate is not None:
        record.centralized = dict(centralized_evaluate(rnd, new_parameters))
    record.bytes_down = clients.traffic.bytes_down
    record.bytes_up = clients.traffic.bytes_up
    record.seconds = time.perf_counter() - t0
    return record, new_parameters, ""


def _snapshot(
    rnd: int,
    seed: int,
    run_id: int,
    num_clients: int,
    parameters: ArrayDict,
    strategy: Strategy,
    history: History,
    clients: Transport,
) -> dict[str, Any]:
    return {
        "round": rnd,
        "seed": seed,
        "run_id": run_id,
        "num_clients": num_clients,
        "parameter_names": list(parameters),
        "parameters": list(parameters.values()),
        "strategy": strategy.state_dict(),
        "history": history.to_dict(),
        # Client state lives in this process only when clients do; worker processes keep theirs.
        "clients": clients.client_state(),
    }


def _restore(
    state: dict[str, Any], strategy: Strategy, clients: Transport, num_clients: int, run_id: int
) -> tuple[int, int, ArrayDict, History]:
    try:
        if state["num_clients"] != num_clients or state["run_id"] != run_id:
            raise CheckpointError(
                f"checkpoint is for run {state['run_id']} with {state['num_clients']} clients, "
                f"not run {run_id} with {num_clients}"
            )
        parameters = dict(zip(state["parameter_names"], state["parameters"], strict=False))
        strategy.load_state_dict(state["strategy"])
        clients.restore_client_state(state["clients"])
        return int(state["round"]), int(state["seed"]), parameters, History.from_dict(state["history"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not hold a valid run state: {exc!r}") from None
