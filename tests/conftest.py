"""Test setup. TRITON_INTERPRET must be set before any @triton.jit function is defined, so it is decided
here, before the package is imported: Triton runs on the CPU under the interpreter unless a GPU is present."""

import os

os.environ.setdefault("TRITON_INTERPRET", "0" if os.path.exists("/dev/nvidia0") else "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

# Property tests draw the same examples on every run, so CI is reproducible (a failure found while developing
# is still replayed from the local example database).
from hypothesis import settings  # noqa: E402

settings.register_profile("ncl", derandomize=True, deadline=None)
# NCL_THOROUGH=1 (the switch of every reliability test) runs 10x the examples: tests that size their own counts
# scale them by settings.default.max_examples / 100.
settings.register_profile("ncl-thorough", parent=settings.get_profile("ncl"), max_examples=1000)
settings.load_profile("ncl-thorough" if os.environ.get("NCL_THOROUGH", "") not in ("", "0") else "ncl")
