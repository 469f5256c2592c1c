"""Methods from other packages: entry-point discovery, `bench check-method`, `bench run` and Table I.

Plugins are throw-away packages under tmp_path. The main one is built from its pyproject.toml and
installed with ``pip install --target`` into a private folder; the others are registered by a bare
``*.dist-info/entry_points.txt``. Either way ``bench`` finds them through the ``survbench.methods``
entry-point group once the folder is on PYTHONPATH: nothing is installed into the shared venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench._core.errors import BenchError
from bench.api import registry, unregister
from bench.data.toy import make_toy_project
from bench.tools.contract import run_contract

BIN = Path(sys.executable).parent
BENCH = str(BIN / "bench")

DEMO_METHOD = '''
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register


@register(MethodInfo(
    name="demo_mlp",
    title="DemoMLP",
    modality="genomics",
    paper="survbench plugin test",
    reported={"BLCA": (0.612, 0.021), "LUAD": (0.598, 0.034)},
    train={"optimizer": "adam", "lr": 1e-3, "epochs": 2},
    genomics="all",
    notes="A two-layer MLP on every genomic column.",
))
class DemoMLP(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dims.omic_dim, hidden), nn.ReLU(), nn.Linear(hidden, dims.n_bins))

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.net(batch.omic))
'''

# The same plugin as written for survbench 0.1 (verbatim): the flat-layout import paths (deprecated
# aliases now) and its defaults repeated in MethodInfo(hparams=...). It must keep working for a release.
LEGACY_DEMO_METHOD = '''
from torch import nn

from bench.batches import Batch
from bench.registry import InputDims, MethodInfo, ModelOutput, SurvivalModel, register


@register(MethodInfo(
    name="demo_mlp",
    title="DemoMLP",
    modality="genomics",
    paper="survbench plugin test",
    reported={"BLCA": (0.612, 0.021), "LUAD": (0.598, 0.034)},
    train={"optimizer": "adam", "lr": 1e-3, "epochs": 2},
    hparams={"hidden": 16},
    genomics="all",
    notes="A two-layer MLP on every genomic column.",
))
class DemoMLP(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dims.omic_dim, hidden), nn.ReLU(), nn.Linear(hidden, dims.n_bins))

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.net(batch.omic))
'''

# Mean pooling over every position, padding included: the output of a short bag changes when it is
# batched with a longer one. Everything else about it is fine.
LEAKY_METHOD = '''
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register


@register(MethodInfo(name="leaky_mean", title="LeakyMean", modality="pathology", paper="test",
                     notes="ignores batch.mask"))
class LeakyMean(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 8) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, dims.n_bins)

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.head(self.fc(batch.x).mean(dim=1)))
'''


def write_package(root: Path, package: str, modules: dict[str, str]) -> None:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    for name, text in modules.items():
        (root / package / f"{name}.py").write_text(textwrap.dedent(text))


def write_dist_info(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """The minimal metadata importlib.metadata needs to list a distribution's entry points."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[survbench.methods]\n{lines}")


def bench(root: Path, site: Path | list[Path], *args: str) -> subprocess.CompletedProcess:
    sites = site if isinstance(site, list) else [site]
    path = os.pathsep.join([*map(str, sites), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "BENCH_ROOT": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([BENCH, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module", params=["current", "legacy"])
def demo(request, tmp_path_factory):
    """The demo plugin built from its pyproject.toml and pip-installed into a private --target folder; once
    with the current import paths (bench.api) and once as written for survbench 0.1 (the old paths)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    write_package(src, "demo_plugin", {"demo_mlp": DEMO_METHOD if request.param == "current" else LEGACY_DEMO_METHOD})
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "survbench-demo-plugin"
        version = "0.1.0"

        [project.entry-points."survbench.methods"]
        demo_mlp = "demo_plugin.demo_mlp"

        [tool.setuptools]
        packages = ["demo_plugin"]
    '''))
    site = tmp / "site"
    subprocess.run([str(BIN / "pip"), "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--no-cache-dir", "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    assert (site / "survbench_demo_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    project = make_toy_project(tmp / "project", n_patients=60, patches=8, dim=16)
    return project.root, site


def markdown_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the first markdown table in ``text``."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return split[0], split[2:]


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


@pytest.mark.slow
def test_plugin_is_listed_with_its_distribution(demo):
    root, site = demo
    r = bench(root, site, "methods")
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("demo_mlp "))
    assert row.split()[:4] == ["demo_mlp", "DemoMLP", "genomics", "best-val"]
    assert "survbench-demo-plugin (demo_plugin.demo_mlp)" in row
    snn = next(ln for ln in r.stdout.splitlines() if ln.startswith("snn "))
    assert " survbench " in snn


@pytest.mark.slow
def test_plugin_checked_run_and_in_table_one(demo):
    root, site = demo
    r = bench(root, site, "check-method", "demo_mlp")
    assert r.returncode == 0, r.stdout + r.stderr
    status = {name: s for s, name in re.findall(r"^\s+(PASS|FAIL|SKIP)\s+(\w+)", r.stdout, flags=re.M)}
    assert status == {"builds": "PASS", "shapes": "PASS", "mask": "SKIP", "learns": "PASS",
                      "deterministic": "PASS", "state": "PASS", "stores": "PASS"}
    assert "from survbench-demo-plugin (demo_plugin.demo_mlp)" in r.stdout
    assert "demo_mlp: 6 passed, 0 failed, 1 skipped" in r.stdout

    # The plugin's metadata sets the training recipe: 2 epochs, every fold of the toy cohort.
    r = bench(root, site, "run", "--method", "demo_mlp", "--cohort", "toy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": trained in") == 5
    mean, std = numbers(re.search(r"^mean ± std\s+(\S+ ± \S+)", r.stdout, flags=re.M).group(1))

    # --compare-paper adds the paper's numbers: for a plugin, its `reported` metadata.
    r = bench(root, site, "tables", "--table", "1", "--format", "markdown", "--results", "results",
              "--compare-paper")
    assert r.returncode == 0, r.stderr
    header, rows = markdown_rows(r.stdout)
    methods = [row[header.index("Method")] for row in rows]
    assert "DemoMLP" in methods
    i = methods.index("DemoMLP")
    # After the paper's genomics rows (SNN, SNNTrans), before the first pathology row.
    assert methods.index("SNNTrans") < i < methods.index("MaxMIL")
    row = rows[i]
    assert numbers(row[header.index("TOY")]) == pytest.approx([mean, std], abs=1e-4)
    assert numbers(row[header.index("Overall")]) == pytest.approx([mean], abs=1e-4)  # TOY is the only cohort
    assert all(row[header.index(c)] == "—" for c in ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC"))
    assert numbers(row[header.index("BLCA paper")]) == [0.612, 0.021]
    assert numbers(row[header.index("LUAD paper")]) == [0.598, 0.034]
    assert row[header.index("BRCA paper")] == "—"


@pytest.mark.slow
def test_check_method_names_the_broken_check(tmp_path):
    site = tmp_path / "site"
    write_package(site, "leaky_plugin", {"leaky_mean": LEAKY_METHOD})
    write_dist_info(site, "leaky-plugin", {"leaky_mean": "leaky_plugin.leaky_mean"})
    r = bench(tmp_path, site, "check-method", "leaky_mean")
    assert r.returncode == 1, r.stdout + r.stderr
    fails = re.findall(r"^\s+FAIL\s+(\w+)\s+(.*)$", r.stdout, flags=re.M)
    assert [name for name, _ in fails] == ["mask"]
    assert re.fullmatch(r"padding changed the output of a \d+-patch bag by \S+ when batched with a \d+-patch bag; "
                        r"use batch\.mask", fails[0][1]), fails[0][1]
    assert "leaky_mean: 6 passed, 1 failed, 0 skipped — failed: mask" in r.stdout


@pytest.mark.slow
def test_name_clash_with_builtin_names_both_sources(tmp_path):
    site = tmp_path / "site"
    write_package(site, "clash_plugin", {"snn": LEAKY_METHOD.replace('name="leaky_mean"', 'name="SNN"')})
    write_dist_info(site, "clash-plugin", {"snn": "clash_plugin.snn"})
    line = one_line_error(bench(tmp_path, site, "methods"))
    assert line == ("error: method name 'snn' is registered twice: by survbench and by clash-plugin "
                    "(clash_plugin.snn); rename one of them")


@pytest.fixture
def load_plugins(monkeypatch):
    """Load the entry points found on extra sys.path folders in this process (uncached); undo afterwards."""
    before = set(registry._REGISTRY)
    added: list[str] = []

    def load(*sites: Path) -> None:
        for site in sites:
            monkeypatch.syspath_prepend(str(site))
            added.extend(p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info"))
        registry._load_entry_points.__wrapped__()

    yield load
    for name in set(registry._REGISTRY) - before:
        unregister(name)
    for module in list(sys.modules):
        if module.split(".")[0] in added:
            del sys.modules[module]


def test_name_clash_between_plugins_names_both_sources(tmp_path, load_plugins):
    sites = []
    for pkg in ("first_plugin", "second_plugin"):
        site = tmp_path / pkg
        write_package(site, pkg, {"leaky": LEAKY_METHOD})
        write_dist_info(site, pkg.replace("_", "-"), {"leaky_mean": f"{pkg}.leaky"})
        sites.append(site)
    with pytest.raises(BenchError) as err:
        load_plugins(*sites)
    m = re.fullmatch(r"method name 'leaky_mean' is registered twice: by (.+) and by (.+); rename one of them",
                     str(err.value))
    assert m is not None, str(err.value)
    assert {m.group(1), m.group(2)} == {"first-plugin (first_plugin.leaky)", "second-plugin (second_plugin.leaky)"}


def test_plugin_that_fails_to_import(tmp_path, load_plugins):
    site = tmp_path / "site"
    write_package(site, "bad_plugin", {"broken": "import not_a_module_anywhere\n"})
    write_dist_info(site, "bad-plugin", {"broken": "bad_plugin.broken"})
    with pytest.raises(BenchError) as err:
        load_plugins(site)
    assert str(err.value) == ("method plugin 'broken' (bad_plugin.broken) failed to load: "
                              "No module named 'not_a_module_anywhere'")


# ----------------------------------------------------------------------------------------------
# Contract violations, one per check, registered in this process (no entry point needed)

# check -> (forward body, the reason of that check, every check that fails). A random evaluation also
# fails the checks that compare two evaluations (mask, state); a model that cannot train cannot store a
# run either (the NLL of 2 logits happens to be computable for the one patient that `learns` uses).
BROKEN = {
    "builds": ("return None", r"TypeError: unsupported hidden=8 \(broken_builds\.py:\d+\)", ["builds"]),
    "shapes": ("return ModelOutput(self.head(self.pool(batch))[:, :2])",
               r"logits shape \(1, 2\) for a batch of 1, expected \(1, 4\)", ["shapes", "stores"]),
    "learns": ("return ModelOutput(self.head(self.pool(batch)).detach())",
               r"the loss carries no gradient: the logits do not depend on any trainable parameter",
               ["learns", "stores"]),
    "deterministic": ("noise = 0.0 if self.training else torch.rand(1)\n"
                      "        return ModelOutput(self.head(self.pool(batch)) + noise)",
                      r"two evaluations differ by \S+; eval mode must not sample \(check model\.training before "
                      r"any random op\)", ["mask", "deterministic", "state"]),
    # State in a plain attribute (set by training, read by evaluation) is lost by state_dict.
    "state": ("if self.training:\n            self.seen = 1.0\n"
              "        return ModelOutput(self.head(self.pool(batch)) + 0.01 * self.seen)",
              r"a model restored from state_dict gives other outputs \(max difference 1\.00e-02\); keep all state "
              r"in parameters or registered buffers", ["state"]),
}

BROKEN_TEMPLATE = '''
import torch
from torch import nn

from bench.api import Batch, InputDims, MethodInfo, ModelOutput, SurvivalModel, register


@register(MethodInfo(name="{name}", title="{name}", modality="pathology", paper="test", notes="broken"))
class Broken(SurvivalModel):
    def __init__(self, dims: InputDims, hidden: int = 8) -> None:
        super().__init__()
        {init_error}self.fc = nn.Sequential(nn.Linear(dims.path_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, dims.n_bins)
        self.seen = 0.0

    def pool(self, batch: Batch) -> torch.Tensor:
        h = self.fc(batch.x) * batch.mask.unsqueeze(-1)
        return h.sum(dim=1) / batch.mask.sum(dim=1, keepdim=True)

    def forward(self, batch: Batch) -> ModelOutput:
        {forward}
'''


@pytest.mark.parametrize("check", list(BROKEN))
def test_each_broken_check_is_named(check, tmp_path, monkeypatch):
    name = f"broken_{check}"
    forward, reason, expected = BROKEN[check]
    init_error = "raise TypeError(f'unsupported hidden={hidden}')\n        " if check == "builds" else ""
    (tmp_path / f"{name}.py").write_text(BROKEN_TEMPLATE.format(name=name, forward=forward, init_error=init_error))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        __import__(name)
        results = {r.name: r for r in run_contract(name, tmp_path / "work")}
    finally:
        unregister(name)
        sys.modules.pop(name, None)
    assert [n for n, r in results.items() if r.status == "fail"] == expected, {n: r.reason for n, r in results.items()}
    assert re.fullmatch(reason, results[check].reason), results[check].reason
    if check == "builds":
        assert {r.reason for n, r in results.items() if n != "builds"} == {"not run: the model does not build"}
        assert {r.status for n, r in results.items() if n != "builds"} == {"skip"}


def test_worked_example_of_the_docs(tmp_path, monkeypatch):
    """docs/adding-a-method.md's DualPool passes the contract as printed there; without the mask it fails `mask`."""
    doc = (Path(__file__).parents[2] / "docs" / "adding-a-method.md").read_text()
    code = re.search(r"\*\*2\. Write the method\*\*.*?```python\n(.*?)```", doc, flags=re.S).group(1)
    leaky = code.replace("mean = (h * mask).sum(dim=1) / mask.sum(dim=1)", "mean = h.mean(dim=1)")
    assert leaky != code
    leaky = leaky.replace('name="dual_pool"', 'name="dual_pool_leaky"')
    (tmp_path / "doc_dual_pool.py").write_text(code)
    (tmp_path / "doc_dual_pool_leaky.py").write_text(leaky)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for module in ("doc_dual_pool", "doc_dual_pool_leaky"):
            __import__(module)
        good = {r.name: r for r in run_contract("dual_pool", tmp_path / "good")}
        bad = {r.name: r for r in run_contract("dual_pool_leaky", tmp_path / "bad")}
    finally:
        for name, module in (("dual_pool", "doc_dual_pool"), ("dual_pool_leaky", "doc_dual_pool_leaky")):
            unregister(name)
            sys.modules.pop(module, None)
    assert {r.status for r in good.values()} == {"pass"}, good
    assert good["builds"].reason == "3204 parameters"  # as printed in the doc
    assert f"  PASS  state          {good['state'].reason}\n" in doc
    assert [n for n, r in bad.items() if r.status == "fail"] == ["mask"]
