"""kwatt analytics (numpy): loading, energy, work, perf-per-watt, targets and verdicts, reports.

DESIGN §6. Modules: :mod:`kwatt.analytics.load`, :mod:`kwatt.analytics.energy`,
:mod:`kwatt.analytics.work`, :mod:`kwatt.analytics.ppw`, :mod:`kwatt.analytics.targets`,
:mod:`kwatt.analytics.verdict`, :mod:`kwatt.analytics.clock`; the report:
:mod:`kwatt.analytics.findings` (what it found), :mod:`kwatt.analytics.render` (table, Markdown,
JSON, line protocol) with :mod:`kwatt.analytics.html` (the HTML page's parts), and
:mod:`kwatt.analytics.report` (``kwatt report`` and ``kwatt analyze``); :mod:`kwatt.analytics.termfit`
fits tables to a terminal's width.
"""
