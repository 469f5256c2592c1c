"""What every method and plugin imports: the model types, the registry, the losses, the paper's numbers.

``from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register`` is all a
method module needs (see docs/adding-a-method.md). This layer depends on torch and on
:mod:`bench._core` (settings keys and the error type) only; nothing in it reads files except the
bundled paper tables.
"""

from bench._core.errors import BenchError
from bench.api.bins import assign_bins, fit_time_bins
from bench.api.exact import explicit_computation, explicit_requested
from bench.api.losses import nll_loss, risk_from_survival, survival_from_hazards
from bench.api.model import GROUP_NAMES, Batch, InputDims, ModelOutput, SurvivalModel
from bench.api.paper import PAPER_COHORTS, paper_table, table1_row
from bench.api.registry import (
    ENTRY_POINT_GROUP,
    MODALITIES,
    MethodInfo,
    all_methods,
    get_method,
    list_methods,
    register,
    signature_hparams,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "GROUP_NAMES",
    "MODALITIES",
    "PAPER_COHORTS",
    "Batch",
    "BenchError",
    "InputDims",
    "MethodInfo",
    "ModelOutput",
    "SurvivalModel",
    "all_methods",
    "assign_bins",
    "explicit_computation",
    "explicit_requested",
    "fit_time_bins",
    "get_method",
    "list_methods",
    "nll_loss",
    "paper_table",
    "register",
    "risk_from_survival",
    "signature_hparams",
    "survival_from_hazards",
    "table1_row",
    "unregister",
]
