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


def own_dir(path, mode=0o700):
    path.mkdir()
    path.chmod(mode)
    return path


def test_a_planted_symlink_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"a file of someone else's\n")
    locks = own_dir(tmp_path / "locks")
    (locks / "gpu0.slot0.lock").symlink_to(victim)
    with pytest.raises(gpu.LockError, match="symlink") as e:
        gpu.acquire(1, devices=["0"], lock_dir=locks, timeout=0)
    assert str(locks / "gpu0.slot0.lock") in str(e.value) and "\n" not in str(e.value)
    assert "MIMETIC_GPU_LOCK_DIR" in str(e.value)
    assert victim.read_bytes() == b"a file of someone else's\n"


def test_a_refused_lock_file_releases_the_slots_taken_before_it(tmp_path):
    locks = own_dir(tmp_path / "locks")
    (locks / "gpu1.slot0.lock").symlink_to(tmp_path / "nowhere")
    with pytest.raises(gpu.LockError):
        gpu.acquire(2, devices=["0", "1"], lock_dir=locks, timeout=0)
    (locks / "gpu1.slot0.lock").unlink()
    with gpu.acquire(2, devices=["0", "1"], lock_dir=locks, timeout=0) as lease:
        assert lease.devices == ["0", "1"]


def test_a_hard_linked_lock_file_is_refused(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"keep\n")
    locks = own_dir(tmp_path / "locks")
    os.link(mine, locks / "gpu0.slot0.lock")
    with pytest.raises(gpu.LockError, match="one link"):
        gpu.acquire(1, devices=["0"], lock_dir=locks, timeout=0)
    assert mine.read_bytes() == b"keep\n"


def test_a_symlinked_lock_folder_is_refused(tmp_path, monkeypatch):
    real = own_dir(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(tmp_path / "link"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(gpu.LockError, match=r"GPU lock folder .*link is a symlink") as e:
        gpu.acquire(1, devices=["0"], timeout=0)
    assert "\n" not in str(e.value)
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_a_lock_folder_others_can_write_in_is_refused(tmp_path, mode):
    locks = own_dir(tmp_path / "locks", mode)
    with pytest.raises(gpu.LockError, match=f"writable by other users .*chmod 700 {locks}"):
        gpu.acquire(1, devices=["0"], lock_dir=locks, timeout=0)
    assert list(locks.iterdir()) == []


def test_a_lock_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    locks = own_dir(tmp_path / "locks")
    monkeypatch.setattr(os, "getuid", lambda: locks.stat().st_uid + 4242)
    with pytest.raises(gpu.LockError, match=f"GPU lock folder {locks} belongs to .*, not to you"):
        gpu.acquire(1, devices=["0"], lock_dir=locks, timeout=0)


def test_a_per_job_folder_is_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    own_dir(tmp_path / "slurm-77", 0o777)
    with pytest.raises(gpu.LockError, match="slurm-77 is writable by other users"):
        gpu.acquire(1, devices=["0"], timeout=0)


def test_a_loose_parent_of_the_per_job_folders_is_refused(tmp_path, monkeypatch):
    base = own_dir(tmp_path / "base", 0o777)
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(base))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    with pytest.raises(gpu.LockError, match=f"GPU lock folder {base} is writable"):
        gpu.acquire(1, devices=["0"], timeout=0)


@pytest.mark.parametrize("umask", [0o000, 0o277])
def test_the_lock_folders_are_created_for_the_user_alone(tmp_path, monkeypatch, umask):
    """Whatever the umask: 0 would leave mkdir's usual 0777 world-writable, 0277 would leave 0700 unwritable."""
    base = tmp_path / "locks"
    monkeypatch.setenv("MIMETIC_GPU_LOCK_DIR", str(base))
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    old = os.umask(umask)
    try:
        with gpu.acquire(1, devices=["0"], timeout=0) as lease:
            assert lease.devices == ["0"]
    finally:
        os.umask(old)
    for folder in (base, base / "slurm-5"):
        assert folder.stat().st_mode & 0o777 == 0o700
    lock = base / "slurm-5" / "gpu0.slot0.lock"
    assert lock.stat().st_mode & 0o077 == 0
    assert lock.read_text().startswith(f"pid {os.getpid()} user ")


def test_the_holder_record_overwrites_without_truncating(tmp_path):
    locks = own_dir(tmp_path / "locks")
    lock = locks / "gpu0.slot0.lock"
    lock.write_text("12345\n")  # what earlier versions wrote
    with gpu.acquire(1, devices=["0"], lock_dir=locks, timeout=0):
        record = lock.read_bytes()
    assert record.startswith(f"pid {os.getpid()} ".encode()) and len(record) == gpu._RECORD
    assert record.count(b"\n") == 1 and record.endswith(b"\n")


def test_a_slot_held_too_long_is_named_once_and_not_taken(tmp_path):
    # flock locks belong to an open file description: this second lease, through its own open,
    # conflicts with the first one even in one process.
    holder = gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=0)
    try:
        heard = []
        with pytest.raises(TimeoutError):
            gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=0.5, poll=0.1, log=heard.append,
                        long_hold=0.05)
    finally:
        holder.release()
    assert len(heard) == 2 and heard[0].startswith("waiting for 1 free GPU slot(s)")
    assert heard[1].startswith(f"GPU slot lock {tmp_path / 'gpu0.slot0.lock'} held for ")
    assert f"by pid {os.getpid()} user " in heard[1] and "stop it" in heard[1]


def test_a_slot_held_by_another_process_names_that_process(tmp_path, holders):
    proc, _ = hold(tmp_path, devices="0")
    holders.append(proc)
    heard = []
    with pytest.raises(TimeoutError):
        gpu.acquire(1, devices=["0"], lock_dir=tmp_path, timeout=0.3, poll=0.1, log=heard.append, long_hold=0)
    assert [line for line in heard if f"by pid {proc.pid} user " in line]


def test_lock_errors_end_mimetic_train_in_one_line():
    from mimetic.cli import _train_errors

    assert issubclass(gpu.LockError, _train_errors())
