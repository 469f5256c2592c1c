"""The ``disk`` placement: bags streamed from the HDF5 file equal the resident ones, the ``auto`` choice by
available memory, the read-ahead thread, and a store that changes under a running job."""

import copy
import json
import os
import pickle
import shutil
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from bench._core.config import load_settings
from bench._core.errors import BenchError
from bench.data.batches import Batches, DiskBags, FoldTensors, ResidentBags, load_bags, resolve_placement
from bench.data.cohort import load_cohort
from bench.data.features import choose_store


def _store(toy):
    co = load_cohort(toy.settings, "toy")
    return co, choose_store(toy.settings, co).info


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_disk_bags_equal_resident_bags(toy):
    co, info = _store(toy)
    resident = ResidentBags(info, co, placement="host")
    disk = DiskBags(info, co)
    assert disk.placement == "disk" and disk.dim == resident.dim == 32
    np.testing.assert_array_equal(disk.lengths, resident.lengths)
    np.testing.assert_array_equal(disk.available, resident.available)
    multi = [i for i in range(co.n_patients) if len(co.slides[i]) > 1]
    assert multi  # the toy has two-slide patients: their bag is two row ranges
    for i in range(co.n_patients):
        _same(disk.bag(i), resident.bag(i))
    # read ahead in a shuffled order with repeats (the balanced sampler draws with replacement), then out of order
    order = [5, 3, 5, *multi[:3], 0, 99]
    disk.prefetch(order)
    for i in order[:4]:
        _same(disk.bag(i), resident.bag(i))
    _same(disk.bag(42), resident.bag(42))  # not the next one: the read-ahead stops, the bag is read now
    assert disk._stream is None
    _same(disk.bag(order[4]), resident.bag(order[4]))
    disk.close()


def test_batches_iterate_reads_ahead_and_gives_the_same_batches(toy):
    co, info = _store(toy)
    fold = co.fold(0)
    resident, disk = ResidentBags(info, co), DiskBags(info, co, depth=3)
    batches = {}
    for name, bags in (("resident", resident), ("disk", disk)):
        t = FoldTensors.build(co, fold, torch.device("cpu"), bags.available)
        b = Batches(co, t, bags, patch_cap=5, generator=torch.Generator().manual_seed(0))
        batches[name] = list(b.iterate(t.train[::-1], 4, train=True))
    assert len(batches["disk"]) == len(batches["resident"]) > 1
    for x, y in zip(batches["resident"], batches["disk"], strict=True):
        _same(x.x, y.x)
        _same(x.mask, y.mask)
        assert x.case_ids == y.case_ids


def test_read_ahead_is_bounded_and_in_order(toy):
    co, info = _store(toy)
    disk = DiskBags(info, co, depth=2)
    reads: list[int] = []
    read = disk._read

    def counting(i):
        reads.append(i)
        return read(i)

    disk._read = counting
    order = list(range(20, 0, -1))
    disk.prefetch(order)
    deadline = time.monotonic() + 10
    while not reads and time.monotonic() < deadline:  # the thread has started
        time.sleep(0.01)
    time.sleep(0.3)  # time to read far ahead, if the queue let it
    assert reads == order[:len(reads)] and 1 <= len(reads) <= 3  # 2 queued + 1 waiting to be queued
    for i in order:
        disk.bag(i)
    assert reads == order  # every bag read once, in the iteration order
    disk.close()


def test_auto_chooses_disk_above_the_memory_share(toy):
    co, info = _store(toy)
    cpu = torch.device("cpu")
    n = info.nbytes
    assert resolve_placement("auto", n, cpu, memory_share=0.5, available=2 * n - 2) == "disk"
    assert resolve_placement("auto", n, cpu, memory_share=0.5, available=2 * n) == "device"
    assert resolve_placement("auto", n, cpu, memory_share=0.9, available=2 * n - 2) == "device"
    assert resolve_placement("auto", n, cpu) == "device"  # no share: today's choice
    assert resolve_placement("host", n, cpu, memory_share=0.5, available=1) == "host"  # explicit wins
    bags = load_bags(info, co, "cpu", "auto", memory_share=0.5, available=n)
    assert isinstance(bags, DiskBags) and bags.memory_share == 0.5
    bags = load_bags(info, co, "cpu", "auto", memory_share=0.5, available=10 * n)
    assert isinstance(bags, ResidentBags) and bags.placement == "device" and bags.memory_share == 0.5
    bags = load_bags(info, co, "cpu", "disk", memory_share=0.5)
    assert isinstance(bags, DiskBags) and bags.memory_share is None  # not chosen by the share


def test_bad_placement_and_share_name_the_valid_values(toy):
    with pytest.raises(BenchError, match="bad placement 'ram': choose one of auto, device, host, disk"):
        resolve_placement("ram", 1, torch.device("cpu"))
    co, info = _store(toy)
    with pytest.raises(BenchError, match="DiskBags"):
        ResidentBags(info, co, placement="disk")
    toml = toy.root / "bench.toml"
    text = toml.read_text()
    toml.write_text(text.replace('features = "auto"', 'features = "auto"\nplacement = "ram"'))
    with pytest.raises(BenchError, match=r"'run.placement': choose one of auto, device, host, disk .in .*bench.toml"):
        load_settings(toy.root)
    toml.write_text(text.replace('features = "auto"', 'features = "auto"\nmemory_share = 0'))
    with pytest.raises(BenchError, match=r"'run.memory_share': a share of the available memory, 0 < x <= 1"):
        load_settings(toy.root)


def test_a_store_truncated_removed_or_replaced_mid_run_is_one_clear_error(toy):
    co, info = _store(toy)
    path = info.path
    keep = path.with_suffix(".bak")
    shutil.copy(path, keep)
    disk = DiskBags(info, co)
    last = int(np.argmax(disk.starts))
    disk.bag(0)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(BenchError, match=f"feature store {path} was truncated during the run .*rebuild it"):
        disk.bag(last)
    disk.prefetch([1, last])  # the read-ahead thread hits it: raised where the bag is asked for
    disk.bag(1)
    with pytest.raises(BenchError, match="was truncated during the run"):
        disk.bag(last)
    path.unlink()
    with pytest.raises(BenchError, match=f"feature store {path} was removed during the run"):
        disk.bag(1)
    shutil.copy(keep, path)  # same bytes, another file: not the one this job opened
    with pytest.raises(BenchError, match=f"feature store {path} was replaced by another file during the run"):
        disk.bag(1)


def test_worker_process_reopens_the_file(toy):
    co, info = _store(toy)
    disk = DiskBags(info, co)
    disk.prefetch([3, 4])
    clone = pickle.loads(pickle.dumps(disk))  # what a spawned worker receives: no handle, no thread
    assert clone._fd is None and clone._stream is None
    _same(clone.bag(4), disk.bag(4))
    clone.close()
    gone = copy.copy(info)
    gone.path = info.path.with_name("moved.h5")
    info.path.rename(gone.path)
    with pytest.raises(BenchError, match=f"feature store {info.path} cannot be opened .*restore it or rebuild it"):
        pickle.loads(pickle.dumps(disk)).bag(4)


def test_nan_rows_on_disk_name_the_slide(toy):
    co, info = _store(toy)
    i = next(i for i in range(co.n_patients) if len(co.slides[i]) > 1)
    second = co.slides[i][1]
    off, _ = info.slide_index()[second]
    with h5py.File(info.path, "r+") as f:
        f["features"][off + 1, 3] = np.nan
    disk = DiskBags(info, co)
    disk.bag(i - 1)
    with pytest.raises(BenchError, match=f"slide {second} of patient {co.case_ids[i]} has NaN/inf.*row {off + 1}"):
        disk.bag(i)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (pinned buffers, asynchronous copies)")
def test_disk_bags_on_a_gpu_equal_resident_bags(toy):
    co, info = _store(toy)
    resident, disk = ResidentBags(info, co, "cuda", placement="device"), DiskBags(info, co, "cuda")
    order = list(range(co.n_patients))
    disk.prefetch(order)
    for i in order:
        _same(disk.bag(i), resident.bag(i))


@pytest.mark.slow
def test_disk_placement_gives_the_same_predictions(toy, tmp_path):
    from bench.train.runner import execute, plan_run

    frames, manifests = {}, {}
    for placement in ("host", "disk"):
        toy.settings["run"]["placement"] = placement
        plan = plan_run(toy.settings, "meanmil", "TOY", epochs=2, folds=[0], results=tmp_path / placement)
        execute(plan)
        frames[placement] = pd.read_csv(plan.dir(0) / "predictions.csv.gz")
        manifests[placement] = json.loads((plan.dir(0) / "manifest.json").read_text())
    pd.testing.assert_frame_equal(frames["host"], frames["disk"], check_exact=True)
    assert manifests["disk"]["environment"]["machine"]["feature_placement"] == "disk"
    assert "feature_memory_share" not in manifests["disk"]["environment"]["machine"]  # explicit, not auto
    toy.settings["run"]["placement"] = "auto"
    toy.settings["run"]["memory_share"] = 1e-9  # every store is larger than that: auto streams from disk
    plan = plan_run(toy.settings, "meanmil", "TOY", epochs=2, folds=[0], results=tmp_path / "auto")
    execute(plan)
    pd.testing.assert_frame_equal(frames["host"], pd.read_csv(plan.dir(0) / "predictions.csv.gz"), check_exact=True)
    machine = json.loads((plan.dir(0) / "manifest.json").read_text())["environment"]["machine"]
    assert machine["feature_placement"] == "disk" and machine["feature_memory_share"] == 1e-9
