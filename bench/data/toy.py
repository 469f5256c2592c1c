"""Tiny self-contained projects for tests and ``bench check-method``.

:func:`make_toy_project` writes a complete survbench project into a folder: ``bench.toml``, a
fabricated cohort ``tcga_toy`` (clinical + genomic table whose columns carry a known survival
signal, named after real signature genes), fixed 5-fold splits, and a synthetic feature store of
small bags. Nothing in it is real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench._core.config import Settings, load_settings

_TOML = """
[paths]
results = "results"
features = "features"
splits = "splits"
data = "data"

[run]
folds = [0, 1, 2, 3, 4]
seed = 0
device = "cpu"
features = "auto"

[data]
genomics = "mutsig"

[synthetic]
patches = {patches}
signal = {signal}
seed = 0
dim = {dim}
"""

#: A few genes of each signature family (so every group is non-empty).
_GENES = {
    "Tumor Suppressor Genes": ["APC", "TP53", "PTEN", "RB1"],
    "Oncogenes": ["KRAS", "MYC", "EGFR", "BRAF"],
    "Protein Kinases": ["AKT1", "CDK4", "JAK2", "MTOR"],
    "Cell Differentiation Markers": ["CD4", "CD8A", "CD19", "CD34"],
    "Transcription Factors": ["FOXA1", "GATA3", "SOX2", "TWIST1"],
    "Cytokines and Growth Factors": ["IL6", "TNF", "VEGFA", "TGFB1"],
}


@dataclass
class ToyProject:
    root: Path
    settings: Settings
    cohort: str = "tcga_toy"


def make_toy_project(
    root: Path,
    *,
    n_patients: int = 100,
    genomic_signal: float = 1.0,
    genomic_noise: float = 1.0,
    patches: int = 16,
    signal: float = 1.0,
    dim: int = 32,
    seed: int = 0,
    censor_rate: float = 0.4,
    sites: int = 1,
) -> ToyProject:
    """Write a toy project under ``root`` and return its settings.

    Survival times follow ``T = 20 exp(-z + 0.3 e)`` with a latent risk ``z ~ N(0, 1)``; the first
    genomic column of every group is ``genomic_signal * z + noise``, the rest is noise (scaled by
    ``genomic_noise``; with both at 0 the genomic input carries nothing at all). About
    ``censor_rate`` of the patients are censored. One in five patients has two slides. ``sites`` tissue
    source sites (barcodes ``TCGA-<site>-<n>``; one site, ``TY``, by default) take the patients in turn.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n_patients)
    t_event = 20.0 * np.exp(-z + 0.3 * rng.standard_normal(n_patients))
    censored = rng.random(n_patients) < censor_rate
    t_obs = np.where(censored, t_event * rng.uniform(0.2, 1.0, n_patients), t_event)
    codes = ["TY"] if sites == 1 else [f"{chr(65 + j // 10)}{j % 10}" for j in range(sites)]
    case_ids = [f"TCGA-{codes[i % sites]}-{i:04d}" for i in range(n_patients)]

    cols: dict[str, np.ndarray] = {}
    for genes in _GENES.values():
        for j, gene in enumerate(genes):
            base = genomic_signal * z if j == 0 else 0.0
            cols[f"{gene}_rnaseq"] = base + genomic_noise * rng.standard_normal(n_patients)
            cols[f"{gene}_cnv"] = genomic_noise * rng.integers(-2, 3, n_patients).astype(float)
            cols[f"{gene}_mut"] = genomic_noise * (rng.random(n_patients) < 0.1).astype(float)
    rows = []
    for i, cid in enumerate(case_ids):
        n_slides = 2 if i % 5 == 0 else 1
        for s in range(n_slides):
            rows.append({"case_id": cid, "slide_id": f"{cid}-01Z-00-DX{s + 1}.TOY{i:04d}{s}.svs",
                         "site": cid.split("-")[1],
                         "is_female": int(i % 2), "oncotree_code": "TOY", "age": 60,
                         "survival_months": round(float(t_obs[i]), 4), "censorship": int(censored[i]), "train": 1,
                         **{k: v[i] for k, v in cols.items()}})
    df = pd.DataFrame(rows)
    (root / "data" / "genomics" / "mutsig").mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "data" / "genomics" / "mutsig" / "tcga_toy_all_clean.csv", index=False)
    width = max(map(len, _GENES.values()))
    sig = pd.DataFrame({k: v + [None] * (width - len(v)) for k, v in _GENES.items()})
    sig.to_csv(root / "data" / "signatures.csv", index=False)

    order = rng.permutation(n_patients)
    folds = np.array_split(order, 5)
    split_dir = root / "splits" / "tcga_toy"
    split_dir.mkdir(parents=True, exist_ok=True)
    for k in range(5):
        val = [case_ids[i] for i in folds[k]]
        train = [case_ids[i] for j in range(5) if j != k for i in folds[j]]
        n = max(len(train), len(val))
        pd.DataFrame({"train": train + [None] * (n - len(train)), "val": val + [None] * (n - len(val))}).to_csv(
            split_dir / f"splits_{k}.csv")
    (root / "bench.toml").write_text(_TOML.format(patches=patches, signal=signal, dim=dim))
    return ToyProject(root=root, settings=load_settings(root))
