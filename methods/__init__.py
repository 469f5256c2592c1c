"""Built-in methods. Importing this package registers every module below (one method per module).

Add a method: write ``methods/<name>.py`` with a model class decorated by
``bench.registry.register(MethodInfo(...))`` and import it here, or ship it in its own package
under the ``survbench.methods`` entry-point group (see docs/adding-a-method.md).
"""

from methods import attmil, cmta, mcat, motcat, poolmil, snn, snntrans, transmil  # noqa: F401
