"""The training layer: one fold through the method-agnostic engine, one method on one cohort, grids of runs.

* :mod:`bench.train.engine` — restore, train one epoch, evaluate: one fold of one method.
* :mod:`bench.train.runner` — ``bench run``: plan (resolve everything), execute (train and store each
  fold), summarize; :func:`~bench.train.runner.create_model` builds one model for a cohort.
* :mod:`bench.train.sweep` — ``bench sweep``: grids of run keys on a worker pool or on Slurm.
* :mod:`bench.train.workers` — worker processes that die with their parent and survive a killed sibling.
"""
