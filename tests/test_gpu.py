"""GPU slot locks, tested with fake device ids (no GPU needed)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mimetic.train import gpu

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mimetic.train import gpu
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


def test_runs_spread_over_devices_before_sharing_one(tmp_path, holders):
    """runs_per_gpu: 2 on four GPUs: four runs take four devices, the fifth shares one."""
    devices = []
    for _ in range(5):
        proc, dev = hold(tmp_path, devices="0,1,2,3", slots=2)
        holders.append(proc)
        devices.append(dev)
    assert sorted(devices[:4]) == ["0", "1", "2", "3"] and devices[4] in devices[:4]


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


CLAIMER = textwrap.dedent("""
    import time
    from mimetic.train import gpu
    lease = gpu.claim(1)
    print(lease.devices[0], flush=True)
    time.sleep(600)
""")


def claim_in_process(env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER], stdout=subprocess.PIPE, text=True, env=env)
    return proc, proc.stdout.readline().strip()


def test_runs_inside_one_slurm_allocation_get_distinct_devices(tmp_path, holders):
    """`salloc --gpus=4`, then several runs: SLURM set CUDA_VISIBLE_DEVICES for the whole
    allocation, and every run must still get a device of its own."""
    env = {**os.environ, "MIMETIC_GPU_LOCK_DIR": str(tmp_path), "SLURM_JOB_ID": "123",
           "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    devices = []
    for _ in range(3):
        proc, dev = claim_in_process(env)
        holders.append(proc)
        devices.append(dev)
    assert len(set(devices)) == 3 and set(devices) <= {"0", "1", "2", "3"}
    # Another SLURM job on the node has its own "GPU 0": it does not wait for this job's locks.
    other, dev = claim_in_process({**env, "SLURM_JOB_ID": "456", "CUDA_VISIBLE_DEVICES": "0"})
    holders.append(other)
    assert dev == "0"


def test_a_waiting_run_says_so(tmp_path, holders):
    proc, _ = hold(tmp_path, devices="0")
    holders.append(proc)
    heard = []
    with pytest.raises(TimeoutError):
        gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=0.5, poll=0.1, log=heard.append)
    assert len(heard) == 1 and "waiting for 1 free GPU slot(s) among ['0']" in heard[0]
