"""The prediction store (``results/``): run keys, predictions, manifests, checkpoints, locks, verification,
and the import of predictions made elsewhere.

* :mod:`bench.store.keys` — :class:`~bench.store.keys.RunKey`, the one key of a stored run, its folder
  and the ``bench run`` command that makes it.
* :mod:`bench.store.predictions` — the store's files and layout.
* :mod:`bench.store.manifest` — what a run records about its config, data, software and machine.
* :mod:`bench.store.checkpoints` — the file a killed fold resumes from.
* :mod:`bench.store.locks` — one lock per run key.
* :mod:`bench.store.verify` — which stored runs verify (``bench results verify`` and every report).
* :mod:`bench.store.results_import` — ``bench results import``.
"""
