"""Synthetic pathology features for the real slide ids of a cohort (clearly labelled as synthetic).

No real whole-slide features are public, so survbench can generate stand-ins that make every
method run out of the box. The generative model:

* ``n_prototypes`` phenotype prototypes ``mu_c ~ N(0, I_dim)`` and, for each, a risk direction
  ``v_c ~ N(0, 0.3^2 I_dim)``; prototype loadings ``u`` spaced evenly in [-1, 1] (high ``u`` =
  aggressive phenotype).
* a latent risk per patient ``z``: the normal score of the rank of its (negated) real survival
  time (censored and uncensored alike), so ``z`` is high for short survival.
* each slide gets ``n ~ U[patches/2, 3*patches/2]`` patches; each patch draws a phenotype
  ``c ~ softmax(1.5 * S * z * u)`` and is ``mu_c + S * z * v_c + eps``, ``eps ~ N(0, I)``.

``S`` (``signal``) scales both effects (which phenotypes a bag holds, and where they sit): with
``S = 0`` the features are independent of survival. The store records every parameter and
``synthetic = true``; every run, table and figure made from it says so.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.special import softmax
from scipy.stats import norm, rankdata

from bench.data.cohort import Cohort
from bench.data.features.store import SlideFeatures, StoreInfo, write_store


def latent_risk(time: np.ndarray) -> np.ndarray:
    """Normal scores of the rank of −time: high for short survival, mean 0."""
    ranks = rankdata(-time)
    return norm.ppf(ranks / (len(time) + 1))


def synthesize(
    cohort: Cohort,
    dest,
    *,
    patches: int = 128,
    signal: float = 1.0,
    seed: int = 0,
    dim: int = 1024,
    n_prototypes: int = 8,
    dtype: str = "float16",
) -> StoreInfo:
    """Write a synthetic store for every slide of ``cohort`` to ``dest``."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((n_prototypes, dim)).astype(np.float32)
    directions = (0.3 * rng.standard_normal((n_prototypes, dim))).astype(np.float32)
    loadings = np.linspace(-1.0, 1.0, n_prototypes)
    z = latent_risk(cohort.time)
    lo, hi = max(1, patches // 2), max(1, (3 * patches) // 2)
    counts = [[int(rng.integers(lo, hi + 1)) for _ in slides] for slides in cohort.slides]

    def slides() -> Iterator[SlideFeatures]:
        for i, slide_ids in enumerate(cohort.slides):
            weights = softmax(1.5 * signal * z[i] * loadings)
            for slide_id, n in zip(slide_ids, counts[i], strict=True):
                kind = rng.choice(n_prototypes, size=n, p=weights)
                x = protos[kind] + np.float32(signal * z[i]) * directions[kind]
                x += rng.standard_normal((n, dim), dtype=np.float32)
                yield SlideFeatures(slide_id, x)

    params = {
        "patches": patches,
        "signal": signal,
        "seed": seed,
        "dim": dim,
        "n_prototypes": n_prototypes,
        "model": "prototype mixture, see bench/features/synthetic.py",
    }
    return write_store(
        dest,
        cohort.name,
        slides(),
        total_patches=sum(map(sum, counts)),
        dim=dim,
        synthetic=True,
        source="synthetic",
        encoder="synthetic",
        params=params,
        dtype=dtype,
    )


def synthetic_store_name(patches: int, signal: float, seed: int, dim: int) -> str:
    """File name of a synthetic store with these parameters."""
    return f"synthetic-p{patches}-s{signal:g}-seed{seed}-d{dim}.h5"
