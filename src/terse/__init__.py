"""terse: neural compression and efficient-inference systems as a usable library."""

__version__ = "0.1.0"
