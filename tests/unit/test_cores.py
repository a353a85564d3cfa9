"""Thread counts that follow the load other processes put on our cores."""

import os

import pytest

from terse.core import cores
from terse.core.cores import ThreadGovernor, default_threads, read_ticks, threads_for


def test_threads_for_leaves_busy_cores_alone():
    assert threads_for(2, 0.0) == 2
    assert threads_for(2, 0.3) == 2
    assert threads_for(2, 0.9) == 1
    assert threads_for(2, 2.5) == 1  # never below one
    assert threads_for(16, 0.0) == cores.MAX_THREADS


class FakeMachine:
    """Busy ticks of all our cores and of this process, advanced by hand."""

    def __init__(self):
        self.now, self.busy, self.own = 0.0, 0, 0

    def run(self, seconds, others, ours, hz=100):
        self.now += seconds
        self.busy += round((others + ours) * seconds * hz)
        self.own += round(ours * seconds * hz)


def _governor(machine, monkeypatch, cores_allowed=2):
    monkeypatch.delenv("TERSE_THREADS", raising=False)
    monkeypatch.setattr(cores, "allowed_cores", lambda: list(range(cores_allowed)))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    monkeypatch.setattr(cores.time, "sleep", lambda s: machine.run(s, machine.others, 0.0))
    return ThreadGovernor(reader=lambda c: (machine.busy, machine.own), clock=lambda: machine.now)


def test_governor_follows_other_processes_not_its_own_threads(monkeypatch):
    machine = FakeMachine()
    machine.others = 1.0  # another process keeps one core busy
    governor = _governor(machine, monkeypatch)
    assert governor.threads() == 1  # first look: a short sample
    machine.run(5.0, others=1.0, ours=1.0)
    assert governor.threads() == 1
    machine.run(5.0, others=0.0, ours=2.0)  # the other process ended; our own spinning does not count
    assert governor.threads() == 2


def test_governor_on_an_idle_machine_and_where_proc_is_missing(monkeypatch):
    machine = FakeMachine()
    machine.others = 0.0
    assert _governor(machine, monkeypatch).threads() == 2
    monkeypatch.setattr(cores, "allowed_cores", lambda: [0, 1, 2])
    assert ThreadGovernor(reader=lambda c: None).threads() == 3


def test_user_choice_wins(monkeypatch):
    monkeypatch.setenv("TERSE_THREADS", "3")
    assert default_threads() == 3
    assert ThreadGovernor(reader=lambda c: pytest.fail("no need to look")).threads() == 3


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_reads_this_machine():
    busy, own = read_ticks(cores.allowed_cores())
    assert busy >= 0 and own >= 0
    assert 1 <= ThreadGovernor().threads() <= cores.MAX_THREADS


def test_cli_start_caps_openmp_only_on_a_busy_machine(monkeypatch):
    monkeypatch.delenv("TERSE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cores, "allowed_cores", lambda: [0, 1])
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert cores.follow_load_at_start() == 2 and "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    monkeypatch.setattr(ThreadGovernor, "threads", lambda self: 1)
    assert cores.follow_load_at_start() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's setting stays
    cores.follow_load_at_start()
    assert os.environ["OMP_NUM_THREADS"] == "2"
