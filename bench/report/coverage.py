"""A feature folder's coverage of a cohort (:func:`bench.data.features.importer.feature_coverage`) as a table."""

from __future__ import annotations

from bench.data.cohort import short_name
from bench.data.features.importer import Coverage
from bench.report.render import Block, Table


def _first(items: list[str], shown: int) -> str:
    """The first ``shown`` items, then ``+M more``."""
    more = f" +{len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def coverage_table(cov: Coverage, shown: int = 5) -> Table:
    """One cohort's coverage: patients and slides covered per fold and split, what is missing or unmatched as notes.

    Args:
        cov: the coverage.
        shown: how many missing patients, slides and unmatched files to name (the rest is counted; JSON has all).
    """
    rec = cov.record()
    rows = [["all", "all", f"{rec['patients_covered']}/{rec['patients']}", f"{rec['slides_covered']}/{rec['slides']}"]]
    rows += [[str(r["fold"]), str(r["split"]), f"{r['patients_covered']}/{r['patients']}",
              f"{r['slides_covered']}/{r['slides']}"] for r in rec["folds"]]
    block = Block("Patients and slides with a feature file (covered/total), per fold of the fixed splits",
                  ["Fold", "Split", "Patients", "Slides"], rows)
    dim = f"{rec['dim']}-d" if rec["dim"] else "no dimension (no file matched)"
    encoder = rec["encoder"] or "not named by the folder"
    notes = [f"Folder {rec['folder']} ({rec['layout']} layout): encoder {encoder}, {dim}, "
             f"{rec['files']} feature file(s) {' '.join(rec['formats'])}".rstrip() + "."]
    if rec["selection"] == "dx":
        notes.append(f"Diagnostic slides only (--slides dx): {len(rec['skipped_slides'])} other slide(s) with a file "
                     f"left out; {len(rec['patients_without_slides'])} patient(s) without a diagnostic slide.")
    for key, what in (("missing_patients", "Missing patients"), ("missing_slides", "Missing slides"),
                      ("unmatched_files", "Files matching no slide")):
        items = [p.rsplit("/", 1)[-1] for p in rec[key]] if key == "unmatched_files" else rec[key]
        listed = f": {_first(items, shown)}" if shown else ""
        notes.append(f"{what} ({len(items)}){listed}." if items else f"{what}: none.")
    notes += [f"Ambiguous: {a}." for a in rec["ambiguities"]]
    return Table(name=f"coverage_{short_name(cov.cohort.name)}",
                 title=f"Feature coverage — {short_name(cov.cohort.name)}", blocks=[block], notes=notes)
