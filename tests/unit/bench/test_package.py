"""The bench package's boundary: shipped in the wheel, never imported by the service
(nor are its own dependencies, scikit-learn and lifetimes)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import setuptools

import streamseg

ROOT = Path(streamseg.__file__).resolve().parent.parent

#: The service's entry points and the stores, as the brief of issue 9 names them.
SERVICE_MODULES = (
    "streamseg.app", "streamseg.cli", "streamseg.serve.api", "streamseg.report",
    "streamseg.store", "streamseg.store.memory", "streamseg.store.sqlite",
    "streamseg.store.redis",
)

# Runs in a fresh interpreter: this test process has imported the bench modules already.
_PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    importlib.import_module(name)

# Then every module of the service package (the benchmarks are a package of their own).
def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        if info.ispkg:
            walk(module)

walk(importlib.import_module("streamseg"))
print(json.dumps(sorted(name for name in sys.modules
                        if name.split(".")[0] in ("sklearn", "lifetimes")
                        or name.startswith("streamseg_bench"))))
"""


def test_service_path_imports_neither_bench_nor_its_libraries() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, *SERVICE_MODULES],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_package_discovery_ships_every_subpackage_with_bench() -> None:
    # What `pip wheel .` (the Dockerfile) packs: setuptools' discovery with pyproject's
    # include pattern. Building a real wheel needs a newer setuptools than the test venv.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    shipped = set(setuptools.find_packages(where=str(ROOT), include=find["include"],
                                           exclude=find.get("exclude", ())))
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "streamseg").rglob("__init__.py")}
    assert "streamseg_bench" in shipped
    assert on_disk <= shipped, on_disk - shipped
