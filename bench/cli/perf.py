"""``bench perf``: the measured speed of methods against the published data path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console, load_settings


def perf(
    method: Annotated[list[str] | None, typer.Option("--method", "-m", help="Method(s) to time (repeatable).")] = None,
    profile: Annotated[str, typer.Option(help="small (this CPU) or realistic (BLCA-sized bags, for a GPU).")] = "small",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    naive: Annotated[bool, typer.Option(help="Also time the published data path (per-slide reads).")] = True,
    iters: Annotated[int | None, typer.Option(help="Timed training iterations per mode.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
    placement: Annotated[str | None, typer.Option(
        help="Instead of methods, time these feature placements (comma-separated: disk, host, device) on one "
             "synthetic store larger than --memory-limit-mb: bags/s, MiB/s, memory growth.")] = None,
    memory_limit_mb: Annotated[int, typer.Option(help="With --placement: the benchmark's own memory limit.")] = 64,
    store_mb: Annotated[int, typer.Option(help="With --placement: the synthetic store's size (> the limit).")] = 128,
    cohort: Annotated[str | None, typer.Option(
        help="Instead of a synthetic profile: thread-seconds per fold-epoch on this bundled cohort's fold, "
             "beside --reference, one torch thread.")] = None,
    fold: Annotated[int, typer.Option(help="With --cohort: the fold.")] = 0,
    patients: Annotated[int | None, typer.Option(
        help="With --cohort: time the first N training and validation patients and scale to the fold.")] = None,
    explicit: Annotated[bool, typer.Option(
        help="With --cohort: also time each method with its exact speed-ups off (the before/after columns).")] = False,
    check_epochs: Annotated[int, typer.Option(
        help="With --cohort: train this many epochs with the speed-ups on and off from one seed and compare "
             "the predictions.")] = 0,
    reference: Annotated[str, typer.Option(help="With --cohort: the method the ratios are to.")] = "attmil",
    repeats: Annotated[int, typer.Option(help="With --cohort: timed passes per mode (the fastest is kept).")] = 2,
    floor: Annotated[bool, typer.Option(
        help="With --cohort: also count each method's matrix-product FLOPs per fold-epoch and print the "
             "thread-seconds they need at this CPU's best one-thread GEMM rate (a lower bound).")] = False,
) -> None:
    """Time methods on a synthetic cohort: train/eval patients per second, 5-fold wall time, memory, speed-up.

    With ``--cohort``: thread-seconds per fold-epoch of each method on a real cohort's fold instead.
    """
    if cohort is not None:
        import json

        from bench.tools.perf_epoch import markdown_table, run_epoch_perf

        found = run_epoch_perf(load_settings(), method or ["ccl"], cohort, fold, patients=patients,
                               explicit=explicit, check_epochs=check_epochs, reference=reference, repeats=repeats,
                               floor=floor, log=lambda s: console.print(s, markup=False))
        console.print(markdown_table(found), markup=False)
        if json_out:
            json_out.write_text(json.dumps(found, indent=1) + "\n")
            console.print(f"wrote {json_out}", markup=False)
        return
    if placement is not None:
        from bench.tools.perf_placement import parse_placements, run_placement_perf, write_placement_json

        found, where = run_placement_perf(load_settings(), parse_placements(placement), memory_limit_mb, store_mb,
                                          device, log=lambda s: console.print(s, markup=False))
        if json_out:
            write_placement_json(json_out, found, where)
            console.print(f"wrote {json_out}", markup=False)
        return
    from bench.tools.perf import run_perf, write_json

    results, machine = run_perf(load_settings(), method or ["ccl"], profile, device, naive=naive, iters=iters,
                                log=lambda s: console.print(s, markup=False))
    gpu = f" {machine['gpu']}" if machine["gpu"] else ""
    console.print(f"machine: {machine['processor']}, {machine['device']}{gpu}, "
                  f"torch {machine['torch']}, {machine['threads']} thread(s); store {machine['store_mb']:.0f} MiB, "
                  f"peak host RSS {machine['peak_host_rss_mb']:.0f} MiB", markup=False)
    if json_out:
        write_json(json_out, results, machine)
        console.print(f"wrote {json_out}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``perf`` to ``app``."""
    app.command("perf")(perf)
