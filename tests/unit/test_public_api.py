"""Every package lists its public names in ``__all__`` and each one resolves."""

import importlib

import pytest

PACKAGES = ["terse.core", "terse.entropy", "terse.nn", "terse.textcomp", "terse.walloc", "terse.autodistil",
            "terse.superposed", "terse.cli", "terse.pretrained"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_resolve(name):
    package = importlib.import_module(name)
    assert isinstance(package.__all__, list | tuple) and package.__doc__
    for public in package.__all__:
        assert getattr(package, public) is not None, f"{name}.{public}"
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018
