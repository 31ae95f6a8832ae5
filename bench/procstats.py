"""CPU time and memory of the stack's processes, read from /proc (Linux)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

__all__ = ["ProcessGroups", "Sample", "base_role", "role_of"]

_CLOCK = os.sysconf("SC_CLK_TCK")


def role_of(cmdline: list[str]) -> str | None:
    """Which part of the stack a process is, from its command line."""
    line = " ".join(cmdline)
    for module, role in (
        ("-m authz", "authz"),
        ("-m translator", "translator"),
        ("-m meter", "meter"),
        ("-m admin_api", "admin_api"),
        ("-m bedrock_simulator", "simulator"),
        ("litellm", "litellm"),
    ):
        if module in line:
            return role
    if "multiprocessing" in line and "spawn" in line:
        return "worker"  # uvicorn worker processes; attributed to their parent below
    if cmdline and cmdline[0].endswith("envoy"):
        return "envoy"
    if cmdline and ("postgres" in cmdline[0] or line.startswith("postgres:")):
        return "postgres"
    return None


def base_role(role: str) -> str:
    """The role without the prefix of its root (`baseline:authz` -> `authz`)."""
    return role.rpartition(":")[2]


@dataclass
class Sample:
    cpu_seconds: dict[str, float]
    rss_bytes: dict[str, int]
    peak_rss_bytes: dict[str, int]
    process_count: dict[str, int]


class ProcessGroups:
    """The root processes and every process under them, grouped by role.

    A root counts when its command line names a role: LiteLLM's root is its uvicorn supervisor
    and the standalone simulator's root is the simulator itself, while `brproxy up` (an idle
    supervisor) names none.

    `prefixes` gives a root's processes a prefix before their role (`{pid: "baseline:"}`): two
    stacks run the same services, and without it their "envoy", "authz", ... would be summed
    into one group, each side paying for the other's.
    """

    def __init__(self, root_pids: list[int], prefixes: Mapping[int, str] | None = None) -> None:
        self.root_pids = root_pids
        self.prefixes = dict(prefixes or {})

    def _members(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        for root in self.root_pids:
            try:
                root_process = psutil.Process(root)
                processes = [root_process, *root_process.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for process in processes:
                try:
                    role = role_of(process.cmdline())
                    if role == "worker":
                        parent = process.parent()
                        role = role_of(parent.cmdline()) if parent else None
                    if role is None and process.name() == "postgres":
                        role = "postgres"
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                if role is not None:
                    groups.setdefault(self.prefixes.get(root, "") + role, []).append(process)
        return groups

    def sample(self) -> Sample:
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        peak: dict[str, int] = {}
        count: dict[str, int] = {}
        for role, processes in self._members().items():
            for process in processes:
                try:
                    times = process.cpu_times()
                    memory = process.memory_info()
                    status = _peak_rss(process.pid)
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                cpu[role] = cpu.get(role, 0.0) + times.user + times.system
                rss[role] = rss.get(role, 0) + memory.rss
                peak[role] = peak.get(role, 0) + status
                count[role] = count.get(role, 0) + 1
        return Sample(cpu, rss, peak, count)

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of every group."""
        total = 0.0
        for processes in self._members().values():
            for process in processes:
                try:
                    times = process.cpu_times()
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
                total += times.user + times.system
        return total

    def wait_until_idle(
        self, *, busy_share: float = 0.05, window_s: float = 0.25, max_wait_s: float = 15.0
    ) -> tuple[float, float]:
        """Wait until all the groups together use under `busy_share` of one core over `window_s`.

        Why: a proxy may go on working after its load generator stopped (requests cut off at
        the time limit, a backlog, a database checkpoint), and every side runs on the same
        cores, so the next run would pay for the previous one. Returns (seconds waited, share
        of one core over the last window); gives up after `max_wait_s`.
        """
        started = time.monotonic()
        while True:
            before = self.cpu_seconds()
            window_started = time.monotonic()
            time.sleep(window_s)
            share = (self.cpu_seconds() - before) / (time.monotonic() - window_started)
            waited = time.monotonic() - started
            if share < busy_share or waited >= max_wait_s:
                return waited, share

    def pss_bytes(self) -> dict[str, int]:
        """Proportional set size per role: shared pages split among the processes sharing them.

        Summed RSS counts Postgres' shared buffers once per backend, so it grows as backends
        touch more of them even when nothing leaks; PSS does not. Slower to read (smaps), so
        only for occasional samples.
        """
        pss: dict[str, int] = {}
        for role, processes in self._members().items():
            for process in processes:
                try:
                    pss[role] = pss.get(role, 0) + process.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    continue
        return pss


def _peak_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0
