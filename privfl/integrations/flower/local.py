"""A Flower deployment on this machine: one ``flower-superlink`` and N ``flower-supernode`` processes.

For tests, benchmarks and trying an app on the deployment runtime without a cluster.
Everything listens on 127.0.0.1 (free ports picked at start), the SuperLink does not
install app dependencies (``--disable-runtime-dependency-installation``: the app runs
in this Python environment), and Flower's CLI config lives in a private ``FLWR_HOME``
with one connection, :data:`CONNECTION`. Every process starts in its own session and
is stopped with its whole process group (the SuperNode's ``flwr-clientapp`` children
included) on :meth:`LocalDeployment.close` or when the ``with`` block ends.

The same steps by hand (ports as you like; one ``--port`` per SuperNode)::

    flower-superlink --insecure --port 29000 --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:29000 --port 29100 \\
        --node-config "partition-id=0 num-partitions=3"
    # FLWR_HOME/config.toml: [superlink.local-deploy] address = "127.0.0.1:29000", insecure = true
    flwr run . local-deploy --stream
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from privfl.errors import ConfigError

CONNECTION = "privfl-local"
"""Name of the SuperLink connection in the deployment's Flower config."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_string(config: Mapping[str, Any]) -> str:
    """``key=value`` pairs as Flower's ``--node-config`` and ``--run-config`` take them."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in config.items())


class LocalDeployment:
    """A SuperLink and ``num_supernodes`` SuperNodes on 127.0.0.1 (see the module docstring).

    Args:
        workdir: directory for logs and Flower's config (``FLWR_HOME``).
        num_supernodes: SuperNodes to start.
        node_configs: per SuperNode, its ``--node-config`` (default: ``partition-id`` and
            ``num-partitions``).
        env: extra environment variables for every process.
        start_timeout: seconds to wait for the SuperLink to listen.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        num_supernodes: int,
        *,
        node_configs: list[Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if num_supernodes < 1:
            raise ConfigError(f"num_supernodes must be >= 1, got {num_supernodes}")
        if node_configs is not None and len(node_configs) != num_supernodes:
            raise ConfigError(f"need {num_supernodes} node configs, got {len(node_configs)}")
        self.workdir = Path(workdir)
        self.num_supernodes = num_supernodes
        self.node_configs = node_configs or [
            {"partition-id": i, "num-partitions": num_supernodes} for i in range(num_supernodes)
        ]
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **(env or {}), "FLWR_HOME": str(self.workdir / "flwr-home")}
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        self.start_timeout = start_timeout
        self.port = 0
        self.superlink: subprocess.Popen | None = None
        self.supernodes: list[subprocess.Popen | None] = []
        self.runs: list[subprocess.Popen] = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        exe = shutil.which(args[0], path=self.env["PATH"]) or args[0]
        return subprocess.Popen(  # noqa: S603 - fixed Flower executables; arguments built here
            [exe, *args[1:]], stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def start(self) -> LocalDeployment:
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "flwr-home"
        home.mkdir(exist_ok=True)
        self.port = free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self.superlink = self._spawn(
            "superlink",
            [
                "flower-superlink",
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--disable-runtime-dependency-installation",
            ],
        )
        self._wait_listening(self.port)
        for i, node_config in enumerate(self.node_configs):
            args = ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}"]
            args += ["--port", str(free_port()), "--node-config", config_string(node_config)]
            self.supernodes.append(self._spawn(f"supernode-{i}", args))
        return self

    def _wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.superlink is not None
            if self.superlink.poll() is not None:
                raise RuntimeError(f"flower-superlink exited; see {self.workdir / 'superlink.log'}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"flower-superlink did not listen on 127.0.0.1:{port} within {self.start_timeout} s")

    def run_command(self, app_dir: str | os.PathLike[str], run_config: Mapping[str, Any] | None = None) -> list[str]:
        """The ``flwr run`` command line for ``app_dir`` on this deployment."""
        cmd = [str(Path(sys.executable).parent / "flwr"), "run", str(app_dir), CONNECTION, "--stream"]
        if run_config:
            cmd += ["--run-config", config_string(run_config)]
        return cmd

    def run(self, app_dir: str | os.PathLike[str], run_config: Mapping[str, Any] | None = None) -> subprocess.Popen:
        """Start ``flwr run`` (output in ``flwr-run-<i>.log``); wait for it with ``.wait(timeout)``."""
        proc = self._spawn(f"flwr-run-{len(self.runs)}", self.run_command(app_dir, run_config))
        self.runs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
        """Wait for a ``flwr run`` started by :meth:`run`; return the run's record from ``flwr list``.

        ``flwr run --stream`` exits 0 even when the ServerApp fails (flwr 1.41), so this asks
        the SuperLink for the run's status and raises :class:`RuntimeError` with Flower's
        ``status-details`` (the ServerApp's exception) unless it is ``finished:completed``.
        """
        proc.wait(timeout=timeout)
        log = (self.workdir / f"flwr-run-{self.runs.index(proc)}.log").read_text(errors="replace")
        match = re.search(r"Successfully started run (\d+)", log)
        if proc.returncode != 0 or match is None:
            raise RuntimeError(f"flwr run failed (exit code {proc.returncode}):\n{log[-3000:]}")
        listing = subprocess.run(  # noqa: S603 - Flower's CLI with arguments built here
            [str(Path(sys.executable).parent / "flwr"), "list", CONNECTION, "--run-id", match[1], "--format", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        record = json.loads(listing.stdout)["runs"][0]
        if record["status"] != "finished:completed":
            raise RuntimeError(f"run {match[1]} ended {record['status']}: {record.get('status-details', '')}")
        return record

    def kill_supernode(self, index: int) -> None:
        """Kill SuperNode ``index`` and its ClientApp processes (SIGKILL: no goodbye to the SuperLink)."""
        proc = self.supernodes[index]
        if proc is not None:
            _kill_group(proc, signal.SIGKILL)
            self.supernodes[index] = None

    def close(self) -> None:
        """Stop every process this deployment started (SIGTERM, then SIGKILL after 10 s)."""
        procs = [p for p in [*self.runs, *self.supernodes, self.superlink] if p is not None]
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        self.runs, self.supernodes, self.superlink = [], [], None

    def __enter__(self) -> LocalDeployment:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # its own session: the group id is its pid
