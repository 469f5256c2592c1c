"""`bench perf --cohort C --floor`: matrix-product FLOP counts (known answers) and the compute floor."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import flop_registry
from typer.testing import CliRunner

from bench.cli import app
from bench.tools.perf_epoch import count_epoch, markdown_table, run_epoch_perf
from bench.tools.perf_floor import FloorCount, ProductFlops, gemm_rate, linear_flops


def test_products_are_counted_by_dtype():
    with ProductFlops() as counter:
        torch.ones(5, 4) @ torch.ones(4, 3)  # 2 * 5 * 4 * 3
        torch.bmm(torch.ones(2, 3, 4, dtype=torch.float64), torch.ones(2, 4, 5, dtype=torch.float64))
        torch.ones(5, 4).exp().sum()  # no product: nothing
    assert dict(counter.flops) == {torch.float32: 120, torch.float64: 2 * 2 * 3 * 4 * 5}
    assert counter.linalg_s == 0


def test_decompositions_are_timed_not_counted():
    a = torch.eye(64, dtype=torch.float64) * 2
    with ProductFlops() as counter:
        torch.linalg.eigh(a)
    assert not counter.flops and counter.linalg_s > 0


def test_depthwise_convolution_backward_costs_twice_its_forward():
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    w = torch.randn(8, 1, 3, 3, requires_grad=True)
    forward = 2 * 36 * 9 * 8  # output positions x taps x channels (one input channel per group)
    with ProductFlops() as counter:
        F.conv2d(x, w, padding=1, groups=8).sum().backward()
    assert counter.flops[torch.float32] == 3 * forward  # forward + input gradient + weight gradient
    # torch's own backward formula counts the weight gradient as a dense 8-channel convolution
    grad_out = torch.ones(1, 8, 6, 6)
    ops = torch.ops.aten.convolution_backward.default(grad_out, x, w, [0], [1, 1], [1, 1], [1, 1], False, [0, 0],
                                                      8, [True, True, False])
    dense = flop_registry[torch.ops.aten.convolution_backward](grad_out, x, w, [0], [1, 1], [1, 1], [1, 1], False,
                                                               [0, 0], 8, [True, True, False], out_val=ops)
    assert dense > 2 * forward


@pytest.mark.parametrize("grad", [True, False])
def test_linear_flops_known_answer_and_equal_to_the_counted_products(grad):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 4)  # fixed features: the first layer needs no input gradient
    with linear_flops(model) as linear, ProductFlops() as counter, torch.set_grad_enabled(grad):
        out = model(x).sum()
        if grad:
            out.backward()
    first, second = 2 * 5 * 4 * 3, 2 * 5 * 3 * 2
    expected = first * 2 + second * 3 if grad else first + second
    assert linear[0] == expected
    assert counter.flops[torch.float32] == expected  # the model has no product outside its Linear layers


def test_floor_is_flops_over_rates():
    count = FloorCount("m", False, {"float32": 4e9, "float64": 3e9}, 2e9)
    rates = {"float32": 2e9, "float64": 1e9}
    assert count.floor_s(rates) == 2 + 3
    assert count.linear_floor_s(rates) == 1
    assert FloorCount("m", flops={"float16": 4e9}).floor_s(rates) == 2  # other dtypes at float32's rate


def test_gemm_rate_is_a_positive_rate():
    rate = gemm_rate(torch.float64, sizes=(32,), repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_counted_epoch_scales_like_the_timed_one(toy_factory):
    toy = toy_factory(n_patients=40, patches=8, dim=16)
    # genomics only: every patient costs the same, so 4 patients scaled to the fold count what the fold does
    part = count_epoch(toy.settings, "snn", "TOY", patients=4)
    whole = count_epoch(toy.settings, "snn", "TOY")
    assert part.flops.keys() == whole.flops.keys() == {"float32"}
    assert part.flops["float32"] == pytest.approx(whole.flops["float32"], rel=1e-12)
    assert part.linear_flops == pytest.approx(whole.linear_flops, rel=1e-12)
    assert 0 < whole.linear_flops <= whole.flops["float32"]


def test_run_epoch_perf_reports_floors(toy_factory):
    toy = toy_factory(n_patients=40, patches=8, dim=16)
    lines: list[str] = []
    found = run_epoch_perf(toy.settings, ["meanmil"], "TOY", patients=4, repeats=1, floor=True, log=lines.append)
    assert set(found["gemm_rates"]) == {"float32", "float64"}
    assert [(f["method"], f["explicit"]) for f in found["floors"]] == [("attmil", False), ("meanmil", False)]
    for f in found["floors"]:
        assert 0 < f["linear_floor_s"] <= f["floor_s"]
        assert f["floor_s"] == pytest.approx(sum(f["flops"].values()) / found["gemm_rates"]["float32"])
    table = markdown_table(found)
    assert "nn.Linear floor" in table.splitlines()[0] and len(table.splitlines()) == 4
    assert any("GFLOP/s" in s for s in lines) and any("nn.Linear alone" in s for s in lines)


def test_explicit_computation_is_counted_too(toy_factory):
    toy = toy_factory(n_patients=40, patches=100, dim=16)  # 102-row Nyström matrices: the spectral path
    found = run_epoch_perf(toy.settings, ["transmil"], "TOY", patients=2, explicit=True, repeats=1, floor=True,
                           log=lambda s: None)
    rows = {(f["method"], f["explicit"]): f for f in found["floors"]}
    assert set(rows) == {("attmil", False), ("transmil", False), ("transmil", True)}
    fast, slow = rows["transmil", False], rows["transmil", True]
    # the same Linear layers either way; the spectral pseudo-inverse runs in float64, the iterations in float32
    assert fast["linear_flops"] == slow["linear_flops"]
    assert "float64" in fast["flops"] and "float64" not in slow["flops"]
    assert fast["linalg_s"] > 0 and slow["linalg_s"] == 0  # one eigendecomposition instead of the iterations
    assert slow["flops"]["float32"] > fast["flops"]["float32"]


def test_cli_floor_option(toy_factory, monkeypatch):
    toy = toy_factory(n_patients=40, patches=8, dim=16)
    monkeypatch.chdir(toy.root)
    monkeypatch.setenv("BENCH_ROOT", str(toy.root))
    res = CliRunner().invoke(app, ["perf", "--cohort", "TOY", "-m", "meanmil", "--patients", "4", "--repeats", "1",
                                   "--floor"])
    assert res.exit_code == 0, res.output
    assert "product floor" in res.output and "GFLOP of products per fold-epoch" in res.output
