"""A script or example of the repository loaded as a module (they are not modules of the package), for its tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str) -> ModuleType:
    """The module at ``ROOT / relpath`` (e.g. ``"scripts/machine_warps.py"``), run afresh: each call gives a new
    module object, so a test may patch it freely."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
