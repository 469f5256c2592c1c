"""survbench: a reproducibility benchmark for multimodal cancer survival methods.

The harness follows the data's path: cohort -> features -> batches -> engine ->
predictions -> metrics -> tables/figures.
"""

__version__ = "0.1.0"
