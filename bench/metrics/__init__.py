"""The metrics: Harrell's C-index and the fold-score protocols (:mod:`bench.metrics.concordance`), and the
survival metrics of the tables and figures (:mod:`bench.metrics.survival`: Uno's C, IBS, AUC, log-rank,
bootstrap). The names of :mod:`bench.metrics.concordance` are importable from here too.
"""

from bench.metrics.concordance import (
    PROTOCOLS,
    cindex,
    epoch_cindex,
    fold_score,
    mean_std,
    seed_summary,
    select_epoch,
)

__all__ = ["PROTOCOLS", "cindex", "epoch_cindex", "fold_score", "mean_std", "seed_summary", "select_epoch"]
