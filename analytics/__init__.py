"""kwatt analytics (numpy): loading, energy, work, perf-per-watt, targets and verdicts, reports.

DESIGN §6. Modules: :mod:`kwatt.analytics.load`, :mod:`kwatt.analytics.energy`, :mod:`kwatt.analytics.work`,
:mod:`kwatt.analytics.ppw`, :mod:`kwatt.analytics.targets`, :mod:`kwatt.analytics.report`, :mod:`kwatt.analytics.html`.
"""
