"""The all-epochs Harrell's C (cindex_rows / epoch_cindex) equals scikit-survival's, epoch by epoch, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.metrics.concordance import cindex, cindex_rows, epoch_cindex


def _labels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    time = rng.integers(1, 12, n).astype(float)  # few distinct times: ties in time everywhere
    cens = (rng.random(n) < 0.6).astype(float)
    return time, cens


@pytest.mark.parametrize("seed", range(6))
def test_rows_equal_sksurv_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    time, cens = _labels(rng, n)
    risks = rng.normal(size=(9, n))
    risks[1] = np.round(risks[1], 1)  # ties in risk
    risks[2] = risks[2, 0]  # one constant risk: every pair tied
    risks[3, : n // 2] = risks[3, 0] + 5e-9  # inside tied_tol of each other
    risks[4, 0] = np.nan
    risks[5, -1] = np.inf
    got = cindex_rows(time, cens, risks)
    want = np.array([cindex(time, cens, r) for r in risks])
    np.testing.assert_array_equal(got, want)  # NaN where sksurv refuses, identical floats elsewhere


def test_degenerate_labels_are_nan_like_sksurv():
    risks = np.arange(6.0).reshape(2, 3)
    for time, cens in [(np.array([1.0, 2, 3]), np.ones(3)),  # all censored
                       (np.array([1.0, 1, 1]), np.zeros(3)),  # events tied in time only: no comparable pair
                       (np.array([1.0, 2, 3]), np.array([1.0, 1, 0]))]:  # the only event is the last time
        assert np.isnan(cindex_rows(time, cens, risks)).all()
        assert all(np.isnan(cindex(time, cens, r)) for r in risks)
    assert np.isnan(cindex_rows(np.array([1.0]), np.array([0.0]), np.array([[1.0]]))).all()


def test_known_answer():
    # pairs (event i, later j): (0,1) (0,2) (0,3) (2,3); risks 4,3,2,2 -> concordant 3, tie (2,3) 1/2 -> 3.5/4
    time, cens = np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 0, 1])
    assert cindex_rows(time, cens, np.array([[4.0, 3, 2, 2]]))[0] == 3.5 / 4


def _frame(rng, n, epochs):
    time, cens = _labels(rng, n)
    rows = [pd.DataFrame({"case_id": [f"p{k:03d}" for k in range(n)], "epoch": e, "split": "val",
                          "survival_months": time, "censorship": cens, "risk": rng.normal(size=n)})
            for e in epochs]
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0)  # stored order is not relied on


def _by_epoch(preds):
    return {e: cindex(g["survival_months"].to_numpy(), g["censorship"].to_numpy(), g["risk"].to_numpy())
            for e, g in preds[preds["split"] == "val"].groupby("epoch")}


def test_epoch_cindex_batched_and_fallback_paths_equal_per_epoch():
    rng = np.random.default_rng(7)
    preds = _frame(rng, 40, [1, 2, 3, 5])
    got = epoch_cindex(preds)
    assert list(got.index) == [1, 2, 3, 5]
    assert got.to_dict() == _by_epoch(preds)
    # an epoch with a patient missing (imported runs may differ by epoch): the per-epoch fallback
    ragged = preds.drop(preds.index[(preds["epoch"] == 2) & (preds["case_id"] == "p000")])
    assert epoch_cindex(ragged).to_dict() == _by_epoch(ragged)
    assert epoch_cindex(preds, "inner").empty
