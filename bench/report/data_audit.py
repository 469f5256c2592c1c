"""The data audit (:mod:`bench.data.audit`) as renderable tables."""

from __future__ import annotations

from bench.data.audit import Audit
from bench.data.cohort import short_name
from bench.report.render import Block, Table


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def audit_table(a: Audit) -> Table:
    """One cohort's audit: a labels block (fold x split), a sites block, and the findings as notes."""
    lab = a.labels
    bins = [c for c in lab.columns if c.startswith("bin_")]
    rows = [[str(r["fold"]), r["split"], str(r["patients"]), str(r["events"]), f"{100 * r['censored']:.1f}%",
             _f(r["follow_up_q25"]), _f(r["follow_up_q50"]), _f(r["follow_up_q75"]), _f(r["follow_up_max"]),
             "/".join(str(int(r[b])) for b in bins)] for r in lab.to_dict("records")]
    labels = Block("Labels per fold (follow-up in months; time bins fitted on the fold's training patients)",
                   ["Fold", "Split", "Patients", "Events", "Censored", "Q25", "Median", "Q75", "Max",
                    "Patients per time bin"], rows)
    srows = [[str(int(r["fold"])), str(int(r["val_sites"])), str(int(r["shared_sites"])),
              f"{100 * r['val_patients_from_shared_sites']:.1f}%"] for r in a.sites.to_dict("records")]
    sites = Block("Tissue source sites (TCGA barcode) shared between train and val",
                  ["Fold", "Val sites", "Also in train", "Val patients from such sites"], srows)
    c = a.censoring
    notes = [
        "Slides per patient: " + ", ".join(f"{k}: {v}" for k, v in sorted(a.slides_per_patient.items())) + ".",
        f"Duplicate slide rows: {len(a.duplicate_slides)}" + (f" (e.g. {a.duplicate_slides[0]})."
                                                              if a.duplicate_slides else "."),
        f"Censoring: {c['censored']} of {c['patients']} censored; event times median {c['event_time_q50']:.1f} "
        f"months, censoring times median {c['censoring_time_q50']:.1f}; {c['censored_beyond_last_event']} censored "
        f"patients ({100 * c['share_censored_beyond_last_event']:.1f}%) followed beyond the last event "
        f"({c['last_event_time']:.1f} months).",
    ]
    if a.genomic_columns:
        notes.append("Genomic columns per build: " + ", ".join(f"{b} {n}" for b, n in sorted(a.genomic_columns.items()))
                     + ".")
    notes += a.notes
    return Table(name=f"audit_{short_name(a.cohort)}", title=f"Data audit — {short_name(a.cohort)}",
                 blocks=[labels, sites], notes=notes, frame=a.labels)
