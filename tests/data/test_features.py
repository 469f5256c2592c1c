"""Feature stores: import round trips (.pt, .h5), missing/corrupt/mismatched input, synthetic stores."""

from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from bench._core.errors import BenchError
from bench.data.batches import ResidentBags
from bench.data.cohort import load_cohort
from bench.data.features.importer import import_features
from bench.data.features.store import read_features, read_info, read_slide
from bench.data.features.synthetic import latent_risk, synthesize


def _write_slides(cohort, folder, fmt="pt", dim=8, skip=(), bad=None, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for slides in cohort.slides:
        for sid in slides:
            if sid in skip:
                continue
            n = int(rng.integers(3, 9))
            x = rng.standard_normal((n, dim)).astype(np.float32)
            truth[sid] = x
            if fmt == "pt":
                torch.save(torch.from_numpy(x), folder / f"{sid}.pt")
            else:
                with h5py.File(folder / f"{sid}.h5", "w") as f:
                    f["features"] = x
                    f["coords"] = rng.integers(0, 1000, (n, 2))
    return truth


@pytest.mark.parametrize("fmt", ["pt", "h5"])
def test_import_round_trip(toy, tmp_path, fmt):
    co = load_cohort(toy.settings, "toy")
    truth = _write_slides(co, tmp_path / "feats" / ("pt_files" if fmt == "pt" else "h5_files"), fmt)
    info = import_features(co, tmp_path / "feats", tmp_path / "store.h5", encoder="resnet50")
    assert not info.synthetic and info.dim == 8 and info.n_slides == co.n_slides
    assert info.has_coords == (fmt == "h5")
    for sid, x in truth.items():
        np.testing.assert_allclose(read_slide(info, sid), x, atol=2e-3, rtol=2e-3)  # fp16 storage
    # a patient's bag is its slides concatenated, in table order, as one contiguous view
    bags = ResidentBags(info, co)
    two = next(i for i, s in enumerate(co.slides) if len(s) == 2)
    expected = np.concatenate([truth[s] for s in co.slides[two]])
    np.testing.assert_allclose(bags.bag(two).float().numpy(), expected, atol=2e-3, rtol=2e-3)
    assert bags.bag(two).data_ptr() == bags.features[bags.starts[two]:].data_ptr()


def test_missing_slides_fail_listing_them(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    missing = co.slides[5][0]
    _write_slides(co, tmp_path / "f", skip={missing})
    with pytest.raises(BenchError, match=rf"1 slide\(s\) of tcga_toy have no feature file .*{missing}.*"
                                         r"--allow-missing-slides"):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()
    info = import_features(co, tmp_path / "f", tmp_path / "s.h5", allow_missing=True)
    assert info.dropped_patients == [co.case_ids[5]]
    bags = ResidentBags(info, co)
    assert not bags.available[5] and bags.available.sum() == co.n_patients - 1


def test_corrupt_file_named(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    _write_slides(co, tmp_path / "f")
    victim = tmp_path / "f" / f"{co.slides[2][0]}.pt"
    victim.write_bytes(b"not a tensor")
    with pytest.raises(BenchError, match=rf"{victim.name} .*is unreadable"):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")


def test_dimension_mismatch_named(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    _write_slides(co, tmp_path / "f")
    odd = tmp_path / "f" / f"{co.slides[7][0]}.pt"
    torch.save(torch.zeros(4, 12), odd)
    with pytest.raises(BenchError, match=rf"dimension mismatch: .*{odd.name} has 12-d features, expected 8"):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")
    with pytest.raises(BenchError, match="expected 1024"):
        import_features(co, tmp_path / "f", tmp_path / "s.h5", expected_dim=1024)


def test_nan_features_name_slide_and_patient(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    _write_slides(co, tmp_path / "f")
    sid = co.slides[9][0]
    x = torch.load(tmp_path / "f" / f"{sid}.pt")
    x[1, 2] = float("nan")
    torch.save(x, tmp_path / "f" / f"{sid}.pt")
    with pytest.raises(BenchError, match=rf"slide {sid} of patient {co.case_ids[9]} has nan"):
        import_features(co, tmp_path / "f", tmp_path / "s.h5")


def test_nan_in_store_caught_at_load(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    info = synthesize(co, tmp_path / "syn.h5", patches=4, dim=4)
    with h5py.File(info.path, "r+") as f:
        f["features"][int(info.offsets[3])] = np.nan
    with pytest.raises(BenchError, match=rf"slide {info.slide_ids[3]} of patient .* has NaN/inf"):
        ResidentBags(read_info(info.path), co)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_finite_check_finds_every_non_finite_entry(dtype, bad):
    from bench.data.batches import _check_finite

    big = torch.finfo(dtype).max
    x = torch.full((6, 8), big, dtype=dtype)  # every row's plain sum overflows: never a false alarm
    x[:, ::2] = -big
    info = SimpleNamespace(path="s.h5", slide_ids=["a", "b"], offsets=[0, 3], lengths=[3, 3])
    cohort = SimpleNamespace(case_ids=["P1", "P2"], slides=[["a"], ["b"]])
    _check_finite(x, info, cohort, chunk=4)  # finite, at the dtype's extremes: passes
    x[4, 5] = bad
    with pytest.raises(BenchError, match="slide b of patient P2 has NaN/inf features \\(row 4\\)"):
        _check_finite(x, info, cohort, chunk=4)


def test_corrupt_store_is_clear(tmp_path):
    bad = tmp_path / "real.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(BenchError, match="unreadable"):
        read_info(bad)


def test_synthetic_signal_and_labels(toy, tmp_path):
    co = load_cohort(toy.settings, "toy")
    z = latent_risk(co.time)

    def corr(signal):
        info = synthesize(co, tmp_path / f"s{signal}.h5", patches=32, dim=16, signal=signal, seed=1)
        assert info.synthetic and info.params["signal"] == signal
        bags = ResidentBags(info, co)
        means = np.stack([bags.bag(i).float().mean(0).numpy() for i in range(co.n_patients)])
        # the best single-feature correlation of a bag mean with the latent risk
        return max(abs(np.corrcoef(means[:, j], z)[0, 1]) for j in range(means.shape[1]))

    assert corr(2.0) > 0.8
    assert corr(0.0) < 0.4
    a = read_features(synthesize(co, tmp_path / "a.h5", patches=4, dim=4, seed=3))
    b = read_features(synthesize(co, tmp_path / "b.h5", patches=4, dim=4, seed=3))
    np.testing.assert_array_equal(a, b)
