"""The shared data path: padded batches and masks, patch caps, samplers."""

import numpy as np
import torch

from bench.data.batches import Batches, FoldTensors, ResidentBags, epoch_order
from bench.data.cohort import load_cohort
from bench.data.features import choose_store


def _batches(toy, **kw):
    co = load_cohort(toy.settings, "toy")
    store = choose_store(toy.settings, co).info
    bags = ResidentBags(store, co)
    fold = co.fold(0)
    t = FoldTensors.build(co, fold, torch.device("cpu"), bags.available)
    return co, fold, bags, Batches(co, t, bags, generator=torch.Generator().manual_seed(0), **kw)


def test_padded_batch_and_mask(toy):
    co, fold, bags, b = _batches(toy)
    idx = [int(i) for i in fold.train[:3]]
    batch = b.make(idx)
    n = [int(bags.lengths[i]) for i in idx]
    assert batch.x.shape == (3, max(n), 32) and batch.x.dtype == torch.float32
    assert batch.mask.sum(1).tolist() == n
    for row, i in enumerate(idx):
        torch.testing.assert_close(batch.x[row, : n[row]], bags.bag(i).float())
        assert batch.x[row, n[row]:].abs().sum() == 0
    assert batch.case_ids == [co.case_ids[i] for i in idx]
    torch.testing.assert_close(batch.omic, torch.from_numpy(fold.genomics[idx]))
    assert [g.shape[1] for g in batch.groups] == list(co.group_sizes)
    assert batch.bins.tolist() == fold.bins[idx].tolist()


def test_patch_cap_train_only(toy):
    _co, fold, bags, b = _batches(toy, patch_cap=5)
    i = int(fold.train[np.argmax(bags.lengths[fold.train])])
    capped = b.make([i], train=True).x[0]
    assert capped.shape[0] == 5
    rows = {tuple(r.tolist()) for r in bags.bag(i).float()}
    assert all(tuple(r.tolist()) in rows for r in capped)  # a subset of the bag's own patches
    assert b.make([i], train=False).x.shape[1] == bags.lengths[i]


def test_samplers():
    train = np.arange(100)
    bins = np.repeat([0, 1, 2, 3], 25)
    cens = np.zeros(100)
    cens[:5] = 1  # class (bin 0, censored) has 5 patients, (bin 0, event) 20
    g = torch.Generator().manual_seed(0)
    order = epoch_order(train, bins, cens, "uniform", g)
    assert sorted(order.tolist()) == train.tolist()
    draws = np.concatenate([epoch_order(train, bins, cens, "balanced", g) for _ in range(200)])
    classes = 2 * bins[draws] + cens[draws].astype(int)
    freq = np.bincount(classes, minlength=8)[[0, 1, 2, 4, 6]] / len(draws)
    np.testing.assert_allclose(freq, 0.2, atol=0.02)  # each present class drawn equally often


def test_host_placement_gives_the_same_bags(toy):
    from bench.data.batches import resolve_placement

    co = load_cohort(toy.settings, "toy")
    store = choose_store(toy.settings, co).info
    on_device = ResidentBags(store, co, placement="device")
    on_host = ResidentBags(store, co, placement="host")
    assert on_host.placement == "host" and resolve_placement("auto", 10**12, torch.device("cpu")) == "device"
    for i in range(co.n_patients):
        torch.testing.assert_close(on_device.bag(i), on_host.bag(i))
