"""How many threads to run on: the cores this process may use, less those other processes keep busy.

OpenMP and numba worker teams spin while they wait for each other, so when another
process keeps one of two cores busy, a two-thread team runs at the pace of its
descheduled thread: level 4 took 94.5 s for 1 KB beside one busy process with two
threads and 16.9 s with one. The exact kernels give the same results on any number of
threads, so coders may follow the machine's load (:class:`ThreadGovernor`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

MAX_THREADS = 8
SAMPLE_SECONDS = 0.05  # first look at the load: short enough to be unnoticed


def allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def fixed_threads() -> int | None:
    """``TERSE_THREADS`` when set to a positive integer (the user's choice), else None."""
    value = os.environ.get("TERSE_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads() -> int:
    """``TERSE_THREADS`` if set, else the cores this process may use (at most 8)."""
    return fixed_threads() or max(1, min(MAX_THREADS, len(allowed_cores())))


def read_ticks(cores: list[int]) -> tuple[int, int] | None:
    """(busy ticks of these cores, ticks this process has used) from /proc, or None where
    /proc is missing. Steal time counts as busy: a hypervisor's other guests also slow a
    spinning team down."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    busy = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
            busy += user + nice + system + irq + softirq + steal
    # utime, stime: fields 14 and 15 of /proc/self/stat (11 and 12 after the name)
    return busy, int(own[11]) + int(own[12])


def threads_for(cores: int, others_busy: float) -> int:
    """Threads for ``cores`` usable cores when other processes keep ``others_busy`` of them busy."""
    return max(1, min(cores, MAX_THREADS, round(cores - others_busy)))


class ThreadGovernor:
    """Picks a thread count from the load other processes put on our cores since the last look.

    Args:
        reader: ``read_ticks`` (injectable for tests); clock: seconds (monotonic).
    """

    def __init__(self, reader: Callable[[list[int]], tuple[int, int] | None] = read_ticks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cores = allowed_cores()
        self._reader, self._clock = reader, clock
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last: tuple[float, tuple[int, int]] | None = None

    def others_busy(self) -> float | None:
        """Cores other processes kept busy since the previous call (None on the first)."""
        now, ticks = self._clock(), self._reader(self._cores)
        if ticks is None:
            return None
        previous, self._last = self._last, (now, ticks)
        if previous is None or now <= previous[0]:
            return None
        (then, (busy0, own0)), (busy1, own1) = previous, ticks
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / self._tick / (now - then))

    def threads(self) -> int:
        """``TERSE_THREADS`` if set; else the cores not kept busy by other processes."""
        fixed = fixed_threads()
        if fixed:
            return fixed
        others = self.others_busy()
        if others is None and self._last is not None:  # first look: a short sample
            time.sleep(SAMPLE_SECONDS)
            others = self.others_busy()
        return threads_for(len(self._cores), others or 0.0)


def follow_load_at_start() -> int:
    """For a fresh process (the CLI): cap OpenMP's threads to the cores other processes
    leave free, before torch starts its pool (``OMP_NUM_THREADS``, unless the user set it).
    Long jobs may raise the count later (torch.set_num_threads). Returns the count."""
    cores = default_threads()
    if fixed_threads() or "OMP_NUM_THREADS" in os.environ:
        return cores
    try:
        if os.getloadavg()[0] < 0.5:  # idle: no need to look closer
            return cores
    except OSError:
        pass
    threads = ThreadGovernor().threads()
    if threads < cores:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads
