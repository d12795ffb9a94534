"""What ``kwatt report`` found: :class:`Report` and :func:`build_report` (pure, no I/O).

A :class:`Report` holds the perf-per-watt analysis of a window (analytics/ppw.py), the verdicts
against the targets of the phase shown and of every phase (analytics/verdict.py), the phases with
data, and the warnings the reader must see before trusting the figures. analytics/render.py turns
it into a terminal table, Markdown, HTML, JSON or the ``efficiency`` measurement; analytics/report.py
is the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from kwatt.analytics.load import SeriesSet
from kwatt.analytics.ppw import Analysis, Options, analyze
from kwatt.analytics.targets import PHASES, Targets
from kwatt.analytics.verdict import Verdict, phases_with_data, verdicts

__all__ = ["Report", "build_report"]


@dataclass(frozen=True, slots=True)
class Report:
    """One report over a window: where the data came from, its analysis, the verdicts of the phase
    shown and of every phase, the phases with data, and the warnings."""

    source: str
    analysis: Analysis
    targets: Targets
    phase: str
    verdicts: tuple[Verdict, ...]
    all_phase_verdicts: tuple[Verdict, ...]
    #: Conditions the reader must see before trusting the figures (one sentence each, naming the
    #: node or device): printed under the tables in every format (``⚠`` lines, a Markdown section,
    #: ``warnings`` in JSON). Empty unless an analysis step adds some.
    warnings: tuple[str, ...] = ()
    #: The phases of the non-baseline device classes in the data (``Targets.phase_of``).
    phases: tuple[str, ...] = ()
    #: True when the reader chose ``phase`` (``--phase``): every class is judged against it.
    phase_chosen: bool = False


def build_report(
    ss: SeriesSet,
    start_s: float,
    end_s: float,
    targets: Targets,
    *,
    options: Options | None = None,
    phase: str | None = None,
) -> Report:
    """The report over ``[start_s, end_s]``. With ``phase``, every device class is judged against
    that phase's targets; without, each class against the targets of its own phase
    (``Targets.phase_of``), so a fleet of phase-1 NPUs and phase-2 PIM cards shows both phases."""
    units = {svc: targets.workloads[wl].work_unit for svc, wl in targets.services.items()}
    analysis = analyze(ss, start_s, end_s, options, units=units)
    per_phase = tuple(v for p in PHASES for v in verdicts(analysis, targets, p))
    phases = phases_with_data(analysis, targets)
    shown = phase or (phases[0] if len(phases) == 1 else targets.default_phase)
    return Report(
        ss.source,
        analysis,
        targets,
        shown,
        tuple(verdicts(analysis, targets, phase)),
        per_phase,
        phases=phases,
        phase_chosen=phase is not None,
    )
