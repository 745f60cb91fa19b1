"""GPU slot locks, tested with fake device ids (no GPU needed)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mimetic import gpu

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mimetic import gpu
    lease = gpu.acquire(1, devices=sys.argv[2].split(","), slots=int(sys.argv[3]), lock_dir=Path(sys.argv[1]))
    print(lease.devices[0], flush=True)
    time.sleep(600)
""")


def hold(lock_dir, devices="0,1", slots=1) -> tuple[subprocess.Popen, str]:
    """A separate process that takes one device and keeps it; returns it and its device."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), devices, str(slots)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def holders():
    procs = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_concurrent_runs_get_distinct_devices(tmp_path, holders):
    a, dev_a = hold(tmp_path)
    b, dev_b = hold(tmp_path)
    holders += [a, b]
    assert {dev_a, dev_b} == {"0", "1"}
    with pytest.raises(TimeoutError, match="no 1 free GPU slot"):
        gpu.acquire(1, devices=["0", "1"], lock_dir=tmp_path, timeout=0.3, poll=0.1)


def test_a_killed_holder_frees_its_device(tmp_path, holders):
    proc, dev = hold(tmp_path, devices="3")
    holders.append(proc)
    assert dev == "3"
    with pytest.raises(TimeoutError):
        gpu.acquire(1, devices=["3"], lock_dir=tmp_path, timeout=0.3, poll=0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with gpu.acquire(1, devices=["3"], lock_dir=tmp_path, timeout=5, poll=0.1) as lease:
        assert lease.devices == ["3"]


def test_slots_let_runs_share_a_device(tmp_path, holders):
    for _ in range(2):
        proc, dev = hold(tmp_path, devices="0", slots=2)
        holders.append(proc)
        assert dev == "0"
    with pytest.raises(TimeoutError):
        gpu.acquire(1, devices=["0"], slots=2, lock_dir=tmp_path, timeout=0.3, poll=0.1)


def test_multi_gpu_lease_is_all_or_nothing(tmp_path, holders):
    proc, _ = hold(tmp_path, devices="1")
    holders.append(proc)
    with pytest.raises(TimeoutError):
        gpu.acquire(2, devices=["0", "1"], lock_dir=tmp_path, timeout=0.3, poll=0.1)
    # The failed attempt must not keep device 0.
    with gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=1, poll=0.1) as lease:
        assert lease.devices == ["0"]
    lease = gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=1, poll=0.1)  # released on exit
    lease.release()


def test_asking_for_more_devices_than_exist(tmp_path):
    with pytest.raises(ValueError, match=r"asks for 2 GPU\(s\) but this machine shows 1"):
        gpu.acquire(2, devices=["0"], lock_dir=tmp_path)


def test_claim_exports_the_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with gpu.claim(1) as lease:
        assert lease.devices == ["4"] and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
        assert (tmp_path / "gpu4.slot0.lock").exists()


def test_under_slurm_the_schedulers_devices_are_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    lease = gpu.claim(2)
    assert lease.devices == ["0", "1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="asks for 3 GPU"):
        gpu.claim(3)
