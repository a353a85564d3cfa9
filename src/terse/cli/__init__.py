"""The ``terse`` command line (typer). ``main(argv)`` runs it in-process.

Imported eagerly, unlike the other packages: the function ``main`` shares its name with
the submodule ``terse.cli.main``, which would shadow a lazily resolved export.
"""

from terse.cli.main import app, main

__all__ = ["app", "main"]
