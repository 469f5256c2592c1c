"""Model inspection: parameter counts under the spec's input sizes and under the bundled data."""

from __future__ import annotations

from bench.batches import input_dims
from bench.cohort import load_cohort
from bench.config import Settings, default_run_config
from bench.registry import InputDims, MethodInfo

#: BLCA signature-group sizes of the MCAT full build, the sizes the spec's parameter estimates use.
SPEC_BLCA_GROUPS = (94, 334, 521, 468, 1496, 479)
SPEC_BLCA_OMIC = 3392


def count(info: MethodInfo, dims: InputDims, hparams: dict) -> int:
    model = info.build(dims, hparams)
    return sum(p.numel() for p in model.parameters())


def parameter_counts(settings: Settings, info: MethodInfo, cohort: str = "tcga_blca") -> dict[str, str]:
    """Parameters with the spec's BLCA sizes (MCAT full build) and with the bundled build of ``cohort``."""
    hparams = default_run_config(settings, info, cohort)["model"]
    spec = InputDims(path_dim=1024, omic_dim=SPEC_BLCA_OMIC, group_sizes=SPEC_BLCA_GROUPS, n_bins=4, cohort=cohort)
    co = load_cohort(settings, cohort)
    ours = input_dims(co, 4, 1024)
    return {
        "BLCA, spec sizes (MCAT build)": f"{count(info, spec, hparams) / 1e6:.3f} M",
        f"{co.name}, {co.build} build": f"{count(info, ours, hparams) / 1e6:.3f} M",
    }
