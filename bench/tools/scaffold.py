"""``bench new-method``: a method module and its test, written from the templates in bench/tools/templates.

The module holds the registry decorator with every metadata field, a small working model for the
chosen modality (it passes the contract as written) and comments on the batch it receives; the
test runs the shared contract on it. Nothing else in the project is touched: registering the
method (an entry point, or the import list of ``methods/__init__.py``) is printed as a next step.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from bench._core.errors import BenchError
from bench._core.files import write_text
from bench.api.registry import ENTRY_POINT_GROUP, MODALITIES

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Names the generated module imports: a model class must not shadow them.
_RESERVED_CLASSES = {"Batch", "InputDims", "MethodInfo", "ModelOutput", "SurvivalModel"}

_GENOMICS_ALL = 'genomics="all",  # what forward reads: "all" (batch.omic) or "groups" (batch.groups)'
_MODALITY = {
    "genomics": {
        "summary": "an MLP on the genomic profile (genomics only).",
        "genomics_line": _GENOMICS_ALL,
        "torch_imports": "from torch import nn",
        "mask_assert": "",
    },
    "pathology": {
        "summary": "attention pooling over the patient's patch features (pathology only).",
        "genomics_line": "genomics=None,  # pathology only: the model reads no genomic input",
        "torch_imports": "import torch\nfrom torch import nn",
        "mask_assert": '\n    assert "mask" in passed  # padding does not change the output',
    },
    "multimodal": {
        "summary": "attention-pooled patch features concatenated with an encoded genomic profile.",
        "genomics_line": _GENOMICS_ALL,
        "torch_imports": "import torch\nfrom torch import nn",
        "mask_assert": '\n    assert "mask" in passed  # padding does not change the output',
    },
}


@dataclass(frozen=True)
class MethodScaffold:
    """What ``bench new-method`` writes: names, the module's import path, and the two file paths."""

    name: str  # registry key, lower case
    title: str  # table label
    cls: str  # model class name
    modality: str
    module: str  # dotted import path of the method module
    method_path: Path
    test_path: Path

    @property
    def builtin(self) -> bool:
        """True when the module goes into survbench's own ``methods`` package."""
        return self.module.startswith("methods.") and (self.method_path.parent / "__init__.py").is_file()

    def render(self) -> dict[Path, str]:
        """The text of the method module and of its test, by destination path."""
        # A plugin's own package is first-party, survbench (bench) third-party: isort separates them.
        module_import = f"from {self.module} import {self.cls}  # registers the method\n"
        if not self.builtin:
            module_import = "\n" + module_import
        fields = {"name": self.name, "title": self.title, "cls": self.cls, "modality": self.modality,
                  "module": self.module, "module_import": module_import, **_MODALITY[self.modality]}
        model = _template(f"model_{self.modality}.py.tmpl").substitute(fields)
        method = _template("method.py.tmpl").substitute(fields, model=model)
        test = _template("test_method.py.tmpl").substitute(fields)
        return {self.method_path: method, self.test_path: test}


def _template(name: str) -> Template:
    return Template(resources.files("bench.tools").joinpath("templates", name).read_text(encoding="utf-8"))


def class_name(name: str) -> str:
    """The model class for a method name: ``my_mil`` -> ``MyMil``; a name with capitals keeps them (``MyMIL``)."""
    if any(c.isupper() for c in name):
        cls = name[0].upper() + name[1:]
    else:
        cls = "".join(part.capitalize() for part in name.split("_") if part)
    return cls + "Model" if cls in _RESERVED_CLASSES else cls


def module_path(directory: Path, stem: str) -> str:
    """The dotted import path of ``directory/stem.py``: the enclosing packages (folders with an
    ``__init__.py``) plus the stem; just the stem outside a package."""
    parts = [stem]
    d = directory.resolve()
    while (d / "__init__.py").is_file():
        parts.insert(0, d.name)
        d = d.parent
    return ".".join(parts)


def default_tests_dir(directory: Path) -> Path:
    """Where the test goes unless told: ``tests/`` beside the top package (above ``src/`` in a src
    layout) when ``directory`` is a package, else ``directory`` itself."""
    d = directory.resolve()
    if not (d / "__init__.py").is_file():
        return d
    while (d.parent / "__init__.py").is_file():
        d = d.parent
    root = d.parent
    if root.name == "src":
        root = root.parent
    return root / "tests"


def plan_scaffold(name: str, modality: str = "multimodal", directory: Path | str = ".",
                  tests: Path | str | None = None, title: str | None = None) -> MethodScaffold:
    """Validate the name and modality and work out what ``bench new-method`` would write (nothing yet)."""
    if not _NAME.fullmatch(name):
        raise BenchError(f"bad method name '{name}': use letters, digits and underscores, starting with a letter "
                         "(it becomes a Python module name)")
    key = name.lower()
    # in any letter case: the module is named `key` and the class keeps the name's capitals (None, True)
    kw = next((k for k in (*keyword.kwlist, *keyword.softkwlist) if k.lower() == key), None)
    if kw is not None:
        why = ("soft keyword (refused in any letter case, like the keywords)" if keyword.issoftkeyword(kw) else
               "keyword (refused in any letter case: the module or class named after it would not compile)")
        raise BenchError(f"bad method name '{name}': '{kw}' is a Python {why}; choose another name")
    if modality not in MODALITIES:
        raise BenchError(f"bad --modality '{modality}': choose one of {', '.join(MODALITIES)}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BenchError(f"--dir {directory} is a file, not a folder")
    module = module_path(directory, key)
    if "." not in module and importlib.util.find_spec(key) is not None:
        raise BenchError(f"a module '{key}.py' outside a package would shadow the installed module '{key}'; "
                         "choose another name or write it into a package (--dir)")
    cls = class_name(name)
    tests_dir = Path(tests) if tests is not None else default_tests_dir(directory)
    return MethodScaffold(name=key, title=title or cls, cls=cls, modality=modality, module=module,
                          method_path=_near(directory / f"{key}.py"), test_path=_near(tests_dir / f"test_{key}.py"))


def _near(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (shorter to print), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def check_name_free(name: str) -> None:
    """Refuse a name that a registered method (built-in or plugin) already has, naming its source."""
    from bench.api.registry import all_methods

    for m in all_methods():
        if m.name == name.lower():
            raise BenchError(f"method name '{m.name}' is taken: {m.title} from {m.source}; choose another name")


def write_scaffold(scaffold: MethodScaffold, force: bool = False) -> list[Path]:
    """Write the method module and its test; existing files are an error unless ``force``."""
    files = scaffold.render()
    for path, text in files.items():  # a name the checks above missed must not leave a broken module behind
        try:
            compile(text, str(path), "exec")
        except SyntaxError as exc:
            raise BenchError(f"method name '{scaffold.name}' gives a module that does not compile ({path}: "
                             f"{exc.msg}); choose another name") from None
    if not force:
        existing = [p for p in files if p.exists()]
        if existing:
            raise BenchError(f"{existing[0]} exists; pass --force to overwrite it or choose another name")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return list(files)


def next_steps(scaffold: MethodScaffold) -> list[str]:
    """What to do after ``bench new-method``: register, check, test, run."""
    s = scaffold
    if s.builtin:
        register = [f"register it: add `{s.name}` to the import list in {s.method_path.parent / '__init__.py'}"]
    else:
        register = [
            "register it: declare the entry point in your package's pyproject.toml and reinstall it (pip install -e .)",
            f'    [project.entry-points."{ENTRY_POINT_GROUP}"]',
            f'    {s.name} = "{s.module}"',
        ]
    return [
        *register,
        f"check it:    bench check-method {s.name}" + ("" if s.builtin else f"   (before registering: "
                                                          f"bench check-method {s.name} --module {s.module})"),
        f"test it:     pytest {s.test_path}",
        f"run it:      bench run --method {s.name} --cohort BLCA   (then: bench tables --table 1)",
    ]
