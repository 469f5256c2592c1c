"""The reporting layer: from the prediction store to the paper's tables and figures.

* :mod:`bench.report.evaluation` — the runs that verify (:func:`~bench.report.evaluation.open_store`),
  grouped into cells and scored under a protocol and a metric.
* :mod:`bench.report.tables` — Tables I–IV; :mod:`bench.report.render` — terminal, Markdown, LaTeX, CSV.
* :mod:`bench.report.figures` — Figs. 6 and 7 and the per-epoch C-index plots.
* :mod:`bench.report.reproduce` — the main job: the README's runs, then every table and figure.
"""
