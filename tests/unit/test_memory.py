"""keep_freed_memory: glibc's allocator tuned once, or left alone on request / elsewhere."""

import ctypes
import sys

import pytest

from terse.core import memory


@pytest.fixture(autouse=True)
def fresh_cache():
    memory.keep_freed_memory.cache_clear()
    yield
    memory.keep_freed_memory.cache_clear()


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("TERSE_KEEP_FREED_MEMORY", "0")
    calls = []
    monkeypatch.setattr(ctypes, "CDLL", lambda name: calls.append(name))
    assert memory.keep_freed_memory() is False and calls == []


def test_without_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.delenv("TERSE_KEEP_FREED_MEMORY", raising=False)

    def missing(name):
        raise OSError(f"{name}: not found")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_the_settings(monkeypatch):
    monkeypatch.delenv("TERSE_KEEP_FREED_MEMORY", raising=False)
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    assert memory.keep_freed_memory() is True
