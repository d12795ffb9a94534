"""kwatt analytics (numpy): loading, energy, work, perf-per-watt, targets and verdicts, reports.

DESIGN §6. Modules: :mod:`analytics.load`, :mod:`analytics.energy`, :mod:`analytics.work`,
:mod:`analytics.ppw`, :mod:`analytics.targets`, :mod:`analytics.report`, :mod:`analytics.html`.
"""
