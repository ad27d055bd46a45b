"""The machine-load meter on real processes: our own tree's CPU against everyone else's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pytest_inferbudget.meters.machine import MachineLoadMeter
from pytest_inferbudget.meters.procfs import descendant_pids, machine_cpu, tree_cpu_s
from pytest_inferbudget.records import MachineLoad

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

SPIN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def spin_in_child(seconds: float) -> subprocess.Popen[bytes]:
    """A busy child: a descendant of this process."""
    return subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)])


def spin_elsewhere(seconds: float) -> None:
    """A busy process that is not ours: its parent shell exits at once, so init adopts it."""
    code = SPIN.format(seconds=seconds).replace("\n", "; ").replace("; while", "\nwhile")
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 &', code], check=True)


def test_a_busy_child_counts_as_our_own_cpu() -> None:
    meter = MachineLoadMeter()
    meter.begin_window("w")
    child = spin_in_child(0.6)
    assert child.pid in descendant_pids(os.getpid())
    child.wait()
    load = meter.end_window("w")
    assert load.own_cpu_s is not None and load.own_cpu_s >= 0.5
    assert load.window_s >= 0.5


def test_a_busy_stranger_counts_as_other_cpu_not_ours() -> None:
    meter = MachineLoadMeter()
    meter.begin_window("w")
    spin_elsewhere(0.8)
    time.sleep(1.2)  # idle here while the stranger spins
    load = meter.end_window("w")
    assert load.own_cpu_s is not None and load.own_cpu_s < 0.2
    assert load.other_cpu_s is not None and load.other_cpu_s >= 0.6
    assert load.other_cpu_share is not None and load.other_cpu_share > 0.2
    assert "other processes" in load.describe()


def test_tree_cpu_and_machine_counters_only_grow() -> None:
    first, second = machine_cpu(), None
    before, _ = tree_cpu_s()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    second = machine_cpu()
    after, _ = tree_cpu_s()
    assert first is not None and second is not None
    assert second.busy_s >= first.busy_s and after - before >= 0.04


def test_loads_combine_over_windows_and_round_trip() -> None:
    a = MachineLoad(1.0, 2, own_cpu_s=0.5, other_cpu_s=0.2, steal_s=0.0, load_avg_1m=1.0)
    b = MachineLoad(3.0, 2, own_cpu_s=1.5, other_cpu_s=1.0, steal_s=0.0, load_avg_1m=2.0)
    both = MachineLoad.combine([a, b])
    assert both is not None
    assert both.window_s == 4.0 and both.windows == 2
    assert both.other_cpu_share == pytest.approx(1.2 / 8.0)
    assert both.load_avg_1m == pytest.approx((1.0 * 1 + 2.0 * 3) / 4)
    assert MachineLoad.from_dict(both.to_dict()) == both
    assert MachineLoad.combine([]) is None
    unknown = MachineLoad(1.0, 2, None, None, None, None)
    assert unknown.other_cpu_share is None and unknown.describe() == "not measured"
    assert MachineLoad.combine([a, unknown]).other_cpu_s is None  # type: ignore[union-attr]


def test_a_missing_proc_reads_as_unmeasured(tmp_path: object) -> None:
    meter = MachineLoadMeter(proc="/nonexistent-proc")
    meter.begin_window("w")
    load = meter.end_window("w")
    assert load.own_cpu_s is None and load.other_cpu_s is None and load.steal_s is None
