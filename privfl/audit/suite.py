"""Run every audit family and write the report.

A family whose module under audit is absent, or that needs an optional dependency that
is not installed, is reported as NOT RUN (with the ``pip install "privfl[...]"`` that
would run it), never as PASS; a family that crashes is reported as ERROR, which fails
the run.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from privfl.audit.config import AuditSettings
from privfl.audit.report import Check, Status, not_run, write_report
from privfl.core.extras import install_hint, missing

FamilyRunner = Callable[[AuditSettings, Path], list[Check]]


@dataclass(frozen=True)
class Family:
    """One audit family.

    Attributes:
        name: family label in the report.
        audited: modules whose claims it audits; if one is missing the family is NOT RUN.
        runner: ``"module:function"`` of the function returning the family's checks
            (imported only when the audited modules exist).
        planned: the checks it would run, listed as NOT RUN when it cannot.
        explanation: one sentence per check kind, for the report's preamble.
        needs: optional third-party modules it needs (e.g. for plots); if one is missing the
            family is NOT RUN and the report names the extra to install.
    """

    name: str
    audited: tuple[str, ...]
    runner: str
    planned: tuple[str, ...]
    explanation: str
    needs: tuple[str, ...] = ()

    def why_not_run(self) -> str:
        """Why the family cannot run here (empty if it can): missing modules and the extras to install."""
        absent = missing(self.audited)
        if absent:
            return f"NOT RUN (module missing: {', '.join(absent)})"
        absent = missing(self.needs)
        if absent:
            hints = " and ".join(sorted({install_hint(m) for m in absent}))
            return f"NOT RUN (needs {', '.join(absent)}: {hints})"
        return ""

    def run(self, settings: AuditSettings, out_dir: Path) -> list[Check]:
        """The family's checks; NOT RUN if a module is missing, one ERROR check if it crashes."""
        reason = self.why_not_run()
        if reason:
            return [not_run(self.name, name, reason) for name in self.planned]
        module, function = self.runner.split(":")
        try:
            return list(getattr(importlib.import_module(module), function)(settings, out_dir))
        except Exception as exc:
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]
            return [
                Check(self.name, "audit family ran", Status.ERROR, f"the audit crashed: {exc!r}", evidence=tuple(lines))
            ]


FAMILIES: tuple[Family, ...] = (
    Family(
        "DP",
        ("privfl.dp.central", "privfl.dp.client_mods", "privfl.dp.noise", "privfl.accounting"),
        "privfl.audit.dp_checks:dp_checks",
        (
            "CentralDp one release, mechanism level",
            "CentralDp audit tightness",
            "CentralDp one release, end to end",
            "LocalDpMod one release",
            "Opacus DP-SGD one step",
            "planted bugs caught",
        ),
        "**DP**: a distinguishing game between neighbouring inputs (with/without a canary client, the two "
        "ends of the clipping ball for local DP, or a gradient-canary record for Opacus DP-SGD); the best "
        "threshold test's error rates, bounded by Clopper-Pearson intervals, give an epsilon lower bound at "
        "the claim's delta (Kairouz et al. 2015; Jagielski et al. 2020; Nasr et al. 2021). FAIL means the "
        "bound exceeds the claimed epsilon: the claim is false at 95% confidence. Planted-bug checks PASS "
        "when the audit FAILs a deliberately broken variant.",
        needs=("matplotlib",),
    ),
    Family(
        "SecAgg+",
        ("privfl.secagg.server", "privfl.secagg.client"),
        "privfl.audit.secagg:secagg_checks",
        (
            "masked vectors are uniform",
            "transcript independent of inputs given their sum",
            "server claiming a survivor dropped is refused",
            "replayed round is refused",
            "inconsistent survivor lists are refused",
        ),
        "**SecAgg+**: what an honest-but-curious server records (its transcript) is tested for uniformity "
        "(chi-square, Kolmogorov-Smirnov) and for independence from individual inputs with the same sum "
        "(two-sample tests); a malicious server's attacks must each end in a typed refusal by the clients.",
        needs=("matplotlib",),
    ),
    Family(
        "Distributed DP",
        ("privfl.ddp.server", "privfl.ddp.mechanism", "privfl.ddp.samplers"),
        "privfl.audit.ddp:ddp_checks",
        (
            "DistributedDp (ddg), one round: no epsilon violation in what the server unmasks",
            "DistributedDp (skellam), one round: no epsilon violation in what the server unmasks",
            "planted bug caught: only one client's noise share reaches the sum",
        ),
        "**Distributed DP**: the same distinguishing game played on what the server unmasks in one "
        "DistributedDp round (the modular sum of every client's rounded vector and noise share), with a canary "
        "client at the clip norm; FAIL if the lower bound exceeds the RDP accountant's epsilon for that release. "
        "The planted bug (one noise share where the ledger counts ten) must be caught.",
        needs=("matplotlib",),
    ),
    Family(
        "CKKS",
        ("privfl.he.params", "privfl.he.keys", "privfl.he.cipher", "privfl.he.strategy"),
        "privfl.audit.ckks:ckks_checks",
        ("parameter security", "server context holds no secret key", "wrong key cannot decrypt"),
        "**CKKS**: every preset (and the context TenSEAL actually builds) is compared with the HE Standard's "
        "128-bit table; the server's context must hold no secret key and be unable to decrypt; a ciphertext "
        "decrypted under another key must be refused or give values unrelated to the plaintext.",
        needs=("tenseal",),
    ),
)


def run_audits(
    settings: AuditSettings,
    out_dir: Path,
    *,
    families: Sequence[Family] | None = None,
    mode: str = "",
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Check], Path]:
    """Run ``families`` (default: :data:`FAMILIES`) and write the report into ``out_dir``.

    Returns the checks and the report's path.
    """
    families = FAMILIES if families is None else families
    out_dir.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    timings = []
    start = time.perf_counter()
    for family in families:
        if progress is not None:
            progress(f"auditing {family.name} ...")
        t0 = time.perf_counter()
        found = family.run(settings, out_dir)
        timings.append(f"{family.name} {time.perf_counter() - t0:.1f} s")
        if progress is not None:
            for check in found:
                progress(f"  [{check.status.value}] {check.name}")
        checks.extend(found)
    elapsed = time.perf_counter() - start
    preamble = [
        "",
        f"Mode: {mode or 'custom'}; confidence {settings.confidence:.0%}; delta {settings.delta:g}; "
        f"seed {settings.seed}; wall time {elapsed:.1f} s ({', '.join(timings)}).",
        "",
        "What the checks do:",
        "",
        *[f"- {family.explanation}" for family in families],
    ]
    path = write_report(checks, out_dir, title="privfl privacy and security audit", preamble=preamble)
    return checks, path


def run_and_summarise(out_dir: Path, *, quick: bool, seed: int = 0, families: Sequence[Family] | None = None) -> int:
    """Run the audits with progress lines and a summary; the exit code (1 if a check failed or errored)."""
    from privfl.audit.config import FULL, QUICK

    settings = dataclasses.replace(QUICK if quick else FULL, seed=seed)
    start = time.perf_counter()
    checks, path = run_audits(settings, out_dir, families=families, mode="quick" if quick else "full", progress=print)
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    print(f"{summary} in {time.perf_counter() - start:.1f} s; report written to {path}")
    return 1 if any(c.failed for c in checks) else 0


def script_main(family: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``audits/`` scripts: run one family (``--quick``, ``--out``, ``--seed``)."""
    import argparse

    chosen = [f for f in FAMILIES if f.name == family]
    if not chosen:
        raise ValueError(f"unknown audit family {family!r}; known: {[f.name for f in FAMILIES]}")
    parser = argparse.ArgumentParser(description=f"privfl {family} audit. {chosen[0].explanation}")
    parser.add_argument("--quick", action="store_true", help="fewer trials")
    parser.add_argument("--out", type=Path, default=Path(f"runs/audit-{family.lower().rstrip('+')}"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run_and_summarise(args.out, quick=args.quick, seed=args.seed, families=chosen)
