"""Audit checks and the Markdown report that lists them.

A :class:`Check` is one verdict (PASS, FAIL, NOT RUN or ERROR) with the figures it
rests on and the evidence that supports it; :func:`write_report` renders checks, in
the order given, as a Markdown file next to their plots.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path


class Status(str, Enum):
    """Verdict of one check."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    NOT_RUN = "NOT RUN"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Check:
    """One audited claim.

    Attributes:
        family: audit family ("DP", "SecAgg+", "CKKS").
        name: the claim, stated so that PASS means the claim held.
        status: the verdict.
        summary: one sentence: what was measured and why it decides the claim.
        figures: ``(label, value)`` pairs, values already formatted.
        evidence: lines of supporting detail (errors raised, statistics, counts).
        plots: PNG file names, relative to the report's directory.
    """

    family: str
    name: str
    status: Status
    summary: str
    figures: tuple[tuple[str, str], ...] = ()
    evidence: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """Whether this check should make the audit exit non-zero."""
        return self.status in (Status.FAIL, Status.ERROR)


def not_run(family: str, name: str, reason: str) -> Check:
    """A check that could not run (e.g. its module has not landed); never counted as a pass."""
    return Check(family, name, Status.NOT_RUN, reason)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(checks: Sequence[Check], *, title: str, preamble: Sequence[str] = ()) -> str:
    """The report: a summary table, then one section per check with its figures, evidence and plots."""
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    lines = [f"# {title}", ""]
    lines += list(preamble)
    lines += [
        "",
        "Verdicts: " + ", ".join(f"{counts[s]} {s.value}" for s in Status if counts[s]) + ".",
        "",
        "| # | Family | Check | Verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {i} | {c.family} | {_cell(c.name)} | **{c.status.value}** |" for i, c in enumerate(checks, 1)]
    for i, check in enumerate(checks, 1):
        lines += ["", f"## {i}. [{check.status.value}] {check.family}: {check.name}", "", check.summary, ""]
        if check.figures:
            lines += ["| Figure | Value |", "|---|---|"]
            lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in check.figures]
            lines.append("")
        lines += [f"- {line}" for line in check.evidence]
        if check.evidence:
            lines.append("")
        lines += [f"![{check.name}]({plot})" for plot in check.plots]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    checks: Sequence[Check], out_dir: Path, *, title: str, preamble: Sequence[str] = (), name: str = "README.md"
) -> Path:
    """Write the Markdown report into ``out_dir`` (plots are expected there already); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"Generated {stamp} on {platform.python_implementation()} {platform.python_version()}.", *preamble]
    path = out_dir / name
    path.write_text(render_markdown(checks, title=title, preamble=header), encoding="utf-8")
    return path
