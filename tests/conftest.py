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
