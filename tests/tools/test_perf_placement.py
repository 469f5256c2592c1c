"""``bench perf --placement``: a store larger than the benchmark's own memory limit, each placement timed on it."""

import json

import pytest

from bench._core.errors import BenchError
from bench.tools.perf_placement import parse_placements, run_placement_perf, write_placement_json


def test_placements_timed_on_a_store_larger_than_the_limit(toy, tmp_path):
    lines: list[str] = []
    results, machine = run_placement_perf(toy.settings, ["disk", "host"], memory_limit_mb=2, store_mb=6,
                                          device="cpu", log=lines.append)
    assert machine["store_mb"] > machine["memory_limit_mb"] == 2 and machine["auto_choice"] == "disk"
    assert [r.placement for r in results] == ["disk", "host"]
    host = results[1]
    for r in results:
        assert r.cold_bags_per_s > 0 and r.warm_bags_per_s > 0
        # MiB/s is bags/s times the mean stored bag size: the same store, so the same ratio for both placements
        assert r.cold_mib_per_s / r.cold_bags_per_s == pytest.approx(machine["store_mb"] / machine["patients"])
    # RSS growth is reported, not asserted: a process that freed memory earlier may reuse it without growing
    assert all(r.peak_rss_growth_mb >= 0 for r in results) and host.placement == "host"
    assert lines[0].startswith("store ") and "auto chooses disk" in lines[0]
    assert lines[1].startswith("disk: ") and "bags/s" in lines[1] and "MiB/s" in lines[1]
    assert not list((toy.root / "perf").iterdir())  # the temporary cohort is removed
    write_placement_json(tmp_path / "p.json", results, machine)
    stored = json.loads((tmp_path / "p.json").read_text())
    assert [p["placement"] for p in stored["placements"]] == ["disk", "host"]


def test_bad_placement_arguments_are_one_clear_error(toy):
    assert parse_placements("disk, host,disk") == ["disk", "host"]
    with pytest.raises(BenchError, match="bad --placement 'disk,ram': a comma-separated list of disk, host, device"):
        parse_placements("disk,ram")
    with pytest.raises(BenchError, match="the store must be larger than the limit"):
        run_placement_perf(toy.settings, ["disk"], memory_limit_mb=64, store_mb=64, device="cpu")
