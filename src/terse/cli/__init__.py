"""The ``terse`` command line (typer). ``main(argv)`` runs it in-process."""

from terse.cli.main import app, main

__all__ = ["app", "main"]
