"""The data layer: cohorts (table, fixed splits, per-fold preprocessing), feature stores and the batches
every method receives.

* :mod:`bench.data.cohort` — a TCGA cohort's patients, labels, genomics, signature groups and splits.
* :mod:`bench.data.features` — the per-cohort HDF5 feature stores: real (imported) or synthetic.
* :mod:`bench.data.batches` — a store resident once in memory, one fold's tensors, padded batches.
* :mod:`bench.data.toy` — tiny synthetic projects for tests, the method contract and notebooks.
"""
