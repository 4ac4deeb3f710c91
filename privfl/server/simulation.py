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
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from privfl.core.exchange import RoundSpec, Strategy
from privfl.core.message import ArrayDict, MessageKind, as_array_dict
from privfl.core.mods import App
from privfl.errors import BudgetExceededError, CheckpointError, ConfigError, MessageError, ProtocolError
from privfl.server.checkpoint import load_checkpoint, save_checkpoint
from privfl.server.history import History, RoundRecord
from privfl.server.run_config import RunConfig
from privfl.server.sampling import FixedFractionSampler
from privfl.server.transport import InProcessClients, ProcessPoolClients, Transport, drive


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
    initial_parameters: ArrayDict | Sequence[np.ndarray],
    workers: int = 0,
    config: RunConfig | None = None,
    **options: Any,
) -> SimulationResult:
    """Run federated training of ``client_app`` on simulated clients ``1..num_clients``.

    Example::

        result = run_simulation(app, num_clients=10, initial_parameters=params,
                                num_rounds=5, strategy=FedAvg(), seed=None)

    Args:
        client_app: the client side (a :class:`~privfl.client.app.ClientApp` with its mods).
        num_clients: population size N.
        initial_parameters: starting global model: named arrays, or a list of arrays as a
            NumPy-style client's ``get_parameters`` returns (named ``"0"``, ``"1"``, ...).
        workers: 0 runs clients in this process; k > 0 spreads them over k processes.
        config: the run's :class:`~privfl.server.run_config.RunConfig`.
        options: :class:`~privfl.server.run_config.RunConfig` fields (``num_rounds``,
            ``strategy``, ``sampler``, ``seed``, ``checkpoint``, ...), given instead of
            ``config`` or replacing its fields.

    Raises:
        ConfigError: ``num_clients`` below 1, or an option that is not a RunConfig field.
    """
    config = RunConfig.build(config, options)
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError(f"num_clients must be an int >= 1, got {num_clients!r}")
    transport = dict(failures=config.failures, limits=config.limits, on_client_error=config.on_client_error)
    clients = (
        ProcessPoolClients(client_app, workers, **transport)
        if workers > 0
        else InProcessClients(client_app, **transport)
    )
    try:
        return run_rounds(clients, tuple(range(1, num_clients + 1)), initial_parameters, config)
    finally:
        clients.close()


def run_rounds(
    clients: Transport,
    population: tuple[int, ...],
    initial_parameters: ArrayDict | Sequence[np.ndarray],
    config: RunConfig,
) -> SimulationResult:
    """The round loop over any :class:`~privfl.server.transport.Transport` (simulated clients, Flower's grid).

    ``population`` lists the client node ids. The transport is not closed; the
    config's ``failures``, ``limits`` and ``on_client_error`` are the transport's to
    apply.
    """
    if not population:
        raise ConfigError("need a non-empty population")
    run = _Run(config, clients, population, seed=secrets.randbits(128) if config.seed is None else config.seed)
    parameters = as_array_dict(initial_parameters)
    history = History()
    start_round = 0
    if config.checkpoint is not None and config.checkpoint.exists():
        start_round, parameters, history = run.restore(load_checkpoint(config.checkpoint))

    stopped = ""
    repeats, last_kind = 0, ""
    show = config.progress
    bar = tqdm(total=config.num_rounds, initial=start_round, desc="rounds", unit="round", disable=not show, leave=False)
    try:
        for rnd in range(start_round + 1, config.num_rounds + 1):
            record, new_parameters, stopped = run.round(rnd, parameters)
            if stopped:
                warnings.warn(f"run stopped before round {rnd}: {stopped}", stacklevel=2)
                break
            parameters = new_parameters
            history.rounds.append(record)
            if config.checkpoint is not None:
                save_checkpoint(config.checkpoint, run.snapshot(rnd, parameters, history))
            bar.update(1)
            acc = record.centralized.get("accuracy", record.evaluate.get("accuracy"))
            if acc is not None:
                bar.set_postfix(accuracy=f"{acc:.3f}")
            for callback in config.callbacks:
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
    return SimulationResult(parameters=parameters, history=history, strategy=config.strategy, stopped=stopped)


@dataclass
class _Run:
    """One run's fixed parts: its configuration, transport, population and sampling seed."""

    config: RunConfig
    clients: Transport
    population: tuple[int, ...]
    seed: int

    def round(self, rnd: int, parameters: ArrayDict) -> tuple[RoundRecord, ArrayDict, str]:
        """One round. Returns (record, new parameters, reason to stop or "")."""
        config, clients, strategy = self.config, self.clients, self.config.strategy
        t0 = time.perf_counter()
        clients.traffic.reset()
        nodes = config.sampler.sample(self.population, _round_rng(self.seed, rnd, 0))
        spec = RoundSpec(
            run_id=config.run_id,
            server_round=rnd,
            nodes=nodes,
            parameters=parameters,
            config={**config.fit_config, "server_round": rnd},
            sampling=config.sampler.info(len(self.population)),
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
        if config.evaluate_fraction > 0:
            evaluation = FixedFractionSampler(config.evaluate_fraction)
            eval_spec = RoundSpec(
                run_id=config.run_id,
                server_round=rnd,
                nodes=evaluation.sample(self.population, _round_rng(self.seed, rnd, 1)),
                parameters=new_parameters,
                config={"server_round": rnd},
                sampling=evaluation.info(len(self.population)),
                kind=MessageKind.EVALUATE,
            )
            record.evaluate = drive(strategy.evaluate_round(eval_spec), clients.deliver)
        if config.centralized_evaluate is not None:
            record.centralized = dict(config.centralized_evaluate(rnd, new_parameters))
        record.bytes_down = clients.traffic.bytes_down
        record.bytes_up = clients.traffic.bytes_up
        record.seconds = time.perf_counter() - t0
        return record, new_parameters, ""

    def snapshot(self, rnd: int, parameters: ArrayDict, history: History) -> dict[str, Any]:
        """The checkpoint after round ``rnd``."""
        return {
            "round": rnd,
            "seed": self.seed,
            "run_id": self.config.run_id,
            "num_clients": len(self.population),
            "parameter_names": list(parameters),
            "parameters": list(parameters.values()),
            "strategy": self.config.strategy.state_dict(),
            "history": history.to_dict(),
            # Client state lives in this process only when clients do; worker processes keep theirs.
            "clients": self.clients.client_state(),
        }

    def restore(self, state: dict[str, Any]) -> tuple[int, ArrayDict, History]:
        """Resume from a checkpoint: the seed, strategy and client state come back; returns (round, model, history)."""
        run_id, num_clients = self.config.run_id, len(self.population)
        try:
            if state["num_clients"] != num_clients or state["run_id"] != run_id:
                raise CheckpointError(
                    f"checkpoint is for run {state['run_id']} with {state['num_clients']} clients, "
                    f"not run {run_id} with {num_clients}"
                )
            parameters = dict(zip(state["parameter_names"], state["parameters"], strict=False))
            self.config.strategy.load_state_dict(state["strategy"])
            self.clients.restore_client_state(state["clients"])
            self.seed = int(state["seed"])
            return int(state["round"]), parameters, History.from_dict(state["history"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not hold a valid run state: {exc!r}") from None
