"""A data audit of a cohort and its splits, and tissue-source-site-preserved splits.

What :func:`audit_cohort` reports, per fold and split (train, val) unless said otherwise:

* **labels**: patients, events, censoring rate, follow-up quantiles (25th, 50th, 75th percentile and
  maximum of the observed times) and the patients per discrete time bin, the bins fitted on that
  fold's training patients (:func:`bench.data.cohort.fit_time_bins`, as training does);
* **tissue source sites**: the site code of a TCGA barcode (``TCGA-<site>-<participant>``); how many
  of the validation fold's sites also occur in its training fold, and the share of validation
  patients from such shared sites. Sites carry scanner, staining and population differences, so
  shared sites make a validation fold easier than an unseen hospital would be (Howard et al.,
  Nat. Commun. 2021);
* **slides per patient** and **duplicate rows** of the cohort table (the same slide listed twice;
  rows of one patient that disagree are refused by the loader before any audit runs);
* **censoring sanity** (whole cohort): event and censoring time quantiles, and the share of censored
  patients followed beyond the last event time (their follow-up carries no event information, and a
  large share hints at administrative censoring or swapped columns);
* **genomic columns** of every bundled build of the cohort.

:func:`site_splits` draws k folds in which every site falls in exactly one validation fold: sites
sorted by patient count (largest first, ties by site code) each go to the fold with the fewest
patients so far (ties: lowest fold number). Deterministic, no randomness; fold sizes are as even as
the site sizes allow, and :func:`site_split_report` says how uneven they came out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench._core.errors import BenchError
from bench.data.cohort import META_COLUMNS, Cohort, assign_bins, fit_time_bins, table_builds, table_path

QUANTILES = (0.25, 0.5, 0.75)


def site_of(case_id: str) -> str:
    """The tissue source site of a TCGA barcode (``TCGA-A5-A0G9`` -> ``A5``), or an error naming it."""
    parts = str(case_id).split("-")
    if len(parts) < 3 or parts[0] != "TCGA" or len(parts[1]) != 2:
        raise BenchError(f"patient {case_id} is not a TCGA barcode (TCGA-<site>-<participant>); "
                         "site audits and site splits need TCGA case ids")
    return parts[1]


@dataclass
class Audit:
    """The findings of :func:`audit_cohort` (tables as DataFrames, ready to render)."""

    cohort: str
    labels: pd.DataFrame  # one row per fold x split
    sites: pd.DataFrame  # one row per fold
    slides_per_patient: dict[int, int]  # number of slides -> patients
    duplicate_slides: list[str]
    censoring: dict[str, Any]
    genomic_columns: dict[str, int]  # build -> number of genomic columns
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"cohort": self.cohort, "labels": self.labels.to_dict("records"),
                "sites": self.sites.to_dict("records"),
                "slides_per_patient": {str(k): v for k, v in sorted(self.slides_per_patient.items())},
                "duplicate_slides": self.duplicate_slides, "censoring": self.censoring,
                "genomic_columns": self.genomic_columns, "notes": self.notes}


def _label_row(fold: int, split: str, time: np.ndarray, cens: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    n = len(time)
    q = np.quantile(time, QUANTILES) if n else [np.nan] * len(QUANTILES)
    bins = np.bincount(assign_bins(time, edges), minlength=len(edges) - 1) if n else np.zeros(len(edges) - 1, int)
    return {"fold": fold, "split": split, "patients": n, "events": int((cens < 0.5).sum()),
            "censored": float(cens.mean()) if n else float("nan"),
            **{f"follow_up_q{int(p * 100)}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
            "follow_up_max": float(time.max()) if n else float("nan"),
            **{f"bin_{k}": int(c) for k, c in enumerate(bins)}}


def censoring_sanity(time: np.ndarray, censorship: np.ndarray) -> dict[str, Any]:
    """Event and censoring time quantiles, and the censored patients followed beyond the last event."""
    time, cens = np.asarray(time, dtype=float), np.asarray(censorship, dtype=float)
    events, censored = time[cens < 0.5], time[cens > 0.5]
    out: dict[str, Any] = {"patients": len(time), "events": len(events), "censored": len(censored)}
    for name, values in (("event", events), ("censoring", censored)):
        for p in QUANTILES:
            out[f"{name}_time_q{int(p * 100)}"] = float(np.quantile(values, p)) if len(values) else float("nan")
    last = float(events.max()) if len(events) else float("nan")
    beyond = int((censored > last).sum()) if len(events) else len(censored)
    out["last_event_time"] = last
    out["censored_beyond_last_event"] = beyond
    out["share_censored_beyond_last_event"] = beyond / len(censored) if len(censored) else 0.0
    return out


def audit_cohort(cohort: Cohort, table: pd.DataFrame | None = None, builds: dict[str, int] | None = None,
                 n_bins: int = 4) -> Audit:
    """Audit one loaded cohort (module docstring).

    Args:
        cohort: the loaded cohort with its splits.
        table: the raw cohort table (one row per slide) for the duplicate check; read from
            ``cohort.table`` when not given.
        builds: genomic columns per build, when the caller has loaded the other builds.
        n_bins: discrete time bins of the label table.
    """
    time, cens = cohort.time, cohort.censorship
    sites = np.array([site_of(c) for c in cohort.case_ids])
    label_rows, site_rows = [], []
    for split in cohort.splits:
        edges = fit_time_bins(time[split.train], cens[split.train], n_bins)
        for name, idx in (("train", split.train), ("val", split.val)):
            label_rows.append(_label_row(split.k, name, time[idx], cens[idx], edges))
        train_sites, val_sites = set(sites[split.train]), set(sites[split.val])
        shared = train_sites & val_sites
        site_rows.append({"fold": split.k, "val_sites": len(val_sites), "shared_sites": len(shared),
                          "val_patients_from_shared_sites": float(np.isin(sites[split.val], list(shared)).mean())
                          if len(split.val) else float("nan")})
    if table is None:
        table = pd.read_csv(cohort.table, usecols=["case_id", "slide_id"], low_memory=False)
    slide_counts = table["slide_id"].astype(str).value_counts()
    duplicates = sorted(slide_counts[slide_counts > 1].index.tolist())
    notes = []
    if duplicates:
        notes.append(f"{len(duplicates)} slide(s) listed more than once in {cohort.table}: {duplicates[0]} ...")
    per_patient = Counter(len(s) for s in cohort.slides)
    return Audit(cohort=cohort.name, labels=pd.DataFrame(label_rows), sites=pd.DataFrame(site_rows),
                 slides_per_patient=dict(per_patient), duplicate_slides=duplicates,
                 censoring=censoring_sanity(time, cens), genomic_columns=dict(builds or {}), notes=notes)


# ----------------------------------------------------------------------------------------------
# Site-preserved splits


def site_splits(case_ids: list[str], n_folds: int = 5) -> list[list[str]]:
    """Validation folds (case ids, sorted) in which every tissue source site lies in one fold.

    Greedy and deterministic (module docstring). Raises when there are fewer sites than folds.
    """
    sites = pd.Series([site_of(c) for c in case_ids], index=list(case_ids))
    sizes = sites.value_counts()
    if len(sizes) < n_folds:
        raise BenchError(f"only {len(sizes)} tissue source site(s) ({', '.join(sorted(sizes.index))}) for "
                         f"{n_folds} folds: a site-preserved split needs at least one site per fold; use the fixed "
                         "splits (--splits fixed)")
    big = str(sizes.index[0]) if len(sizes) else ""
    if len(sizes) and 2 * int(sizes.iloc[0]) > len(case_ids):
        raise BenchError(f"tissue source site {big} holds {int(sizes.iloc[0])} of {len(case_ids)} patients: the fold "
                         f"that validates on it would train on fewer patients than it validates, so the sites cannot "
                         f"be separated into {n_folds} usable folds; use the fixed splits (--splits fixed)")
    order = sorted(sizes.index, key=lambda s: (-int(sizes[s]), s))
    load = [0] * n_folds
    members: list[list[str]] = [[] for _ in range(n_folds)]
    for s in order:
        k = min(range(n_folds), key=lambda j: (load[j], j))
        load[k] += int(sizes[s])
        members[k].extend(sites.index[sites == s].tolist())
    return [sorted(m) for m in members]


def check_site_folds(cohort: Cohort) -> None:
    """Refuse site splits in which a tissue source site has validation patients in two folds (hand-edited or
    stale files), naming the site, the folds and the command that rewrites them."""
    where: dict[str, int] = {}
    for split in cohort.splits:
        for i in split.val:
            site = site_of(cohort.case_ids[i])
            if where.setdefault(site, split.k) != split.k:
                short = cohort.name.removeprefix("tcga_").upper()
                raise BenchError(f"tissue source site {site} has validation patients in folds {where[site]} and "
                                 f"{split.k} of {cohort.split_dir}: not a site-preserved split; rewrite it with "
                                 f"`bench data site-splits --cohort {short} --force`")


def site_split_frames(case_ids: list[str], n_folds: int = 5) -> list[pd.DataFrame]:
    """The ``splits_<k>.csv`` tables (``,train,val`` like the fixed splits) of :func:`site_splits`."""
    folds = site_splits(case_ids, n_folds)
    frames = []
    for val in folds:
        held = set(val)
        train = sorted(c for c in case_ids if c not in held)
        n = max(len(train), len(val))
        frames.append(pd.DataFrame({"train": train + [None] * (n - len(train)), "val": val + [None] * (n - len(val))}))
    return frames


def site_split_report(case_ids: list[str], folds: list[list[str]]) -> dict[str, Any]:
    """Fold sizes, sites per fold and the largest site (as a share of the cohort) of a site split."""
    sizes = [len(f) for f in folds]
    site_count = Counter(site_of(c) for c in case_ids)
    return {"fold_sizes": sizes, "sites_per_fold": [len({site_of(c) for c in f}) for f in folds],
            "largest_site": max(site_count, key=lambda s: (site_count[s], s)),
            "largest_site_share": max(site_count.values()) / len(case_ids),
            "size_ratio": max(sizes) / max(1, min(sizes))}


def write_site_splits(folder: Path, case_ids: list[str], n_folds: int = 5) -> list[Path]:
    """Write the site splits under ``folder`` (each file written to a temp name, then renamed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(site_split_frames(case_ids, n_folds)):
        path = folder / f"splits_{k}.csv"
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_csv(tmp)
        tmp.replace(path)
        paths.append(path)
    return paths


def plot_audit(audits: list[Audit]):
    """One journal-width figure (7.2 in) of the audits: per cohort and fold, the censoring rate and the median
    follow-up of train (line) and val (dots), and the share of validation patients from a site seen in training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not audits:
        raise BenchError("no cohort to plot")
    with plt.rc_context({"font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7, "legend.fontsize": 7,
                         "xtick.labelsize": 7, "ytick.labelsize": 7}):
        fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.6), layout="constrained")
        ticks, labels = [], []
        for i, a in enumerate(audits):
            lab = a.labels
            x = i * 6 + lab[lab["split"] == "val"]["fold"].to_numpy()
            for ax, col, scale in ((axes[0], "censored", 100.0), (axes[1], "follow_up_q50", 1.0)):
                tr = lab[lab["split"] == "train"][col].to_numpy() * scale
                va = lab[lab["split"] == "val"][col].to_numpy() * scale
                ax.plot(x, tr, color="0.4", lw=1, label="train" if i == 0 else None)
                ax.plot(x, va, "o", color="C0", ms=3, label="val" if i == 0 else None)
            axes[2].bar(x, a.sites["val_patients_from_shared_sites"].to_numpy() * 100.0, color="C1", width=0.8)
            ticks.append(i * 6 + 2)
            labels.append(a.cohort.removeprefix("tcga_").upper())
        for ax, title, ylabel in ((axes[0], "Censoring", "censored patients (%)"),
                                  (axes[1], "Follow-up", "median follow-up (months)"),
                                  (axes[2], "Sites seen in training", "val patients from such sites (%)")):
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.set_xticks(ticks, labels)
            ax.set_xlabel("cohort (folds 0–4)")
        axes[2].set_ylim(0, 100)
        axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    return fig


def genomic_columns_per_build(settings: Any, name: str) -> dict[str, int]:
    """Genomic columns of each bundled build of a cohort, from the tables' headers only."""
    out = {}
    for build in table_builds(settings, name):
        path = table_path(settings, name, build)
        if path is None:
            continue
        header = pd.read_csv(path, nrows=0).columns
        out[build] = sum(1 for c in header if c not in META_COLUMNS and not str(c).startswith("Unnamed"))
    return out
