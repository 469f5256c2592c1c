"""Built-in methods. Importing this package registers every module below (one method per module).

Add a method: write ``methods/<name>.py`` with a model class decorated by
``bench.api.register(MethodInfo(...))`` and import it here, or ship it in its own package
under the ``survbench.methods`` entry-point group (see docs/adding-a-method.md).
"""

from methods import (  # noqa: F401
    attmil,
    ccl,
    clam,
    cmta,
    dtfd,
    dualtrans,
    gpdbn,
    hfbsurv,
    m3if,
    mcat,
    motcat,
    poolmil,
    porpoise,
    snn,
    snntrans,
    survpath,
    transmil,
)
