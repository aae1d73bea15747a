import pytest
import torch

import ncl_kernels
from ncl_kernels import _ext, _oplib, dispatch
from ncl_kernels.memory import reference


def test_info_lists_every_backend_with_a_reason():
    info = ncl_kernels.info()
    assert set(info) == set(dispatch.BACKENDS)
    assert info["reference"] == "available"
    assert all(v == "available" or len(v) > 10 for v in info.values())


def test_cpu_default_is_cpp_when_built(monkeypatch):
    monkeypatch.delenv("NCL_BACKEND", raising=False)
    expected = "cpp" if _ext.load()[0] is not None else "reference"
    assert dispatch.select(torch.device("cpu"), torch.float32) == expected


def test_env_forces_a_backend(monkeypatch):
    monkeypatch.setenv("NCL_BACKEND", "reference")
    assert dispatch.select(torch.device("cpu"), torch.float32) == "reference"


def test_forcing_an_impossible_backend_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NCL_BACKEND", "cuda")
    with pytest.raises(dispatch.BackendUnavailable, match="backend 'cuda' cannot run this call"):
        ncl_kernels.soft_read(torch.randn(1, 2, 3), torch.rand(1, 1, 2))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        ncl_kernels.soft_read(torch.randn(1, 2, 3), torch.rand(1, 1, 2), backend="fortran")


def test_float64_never_goes_to_a_gpu_backend():
    assert "float64" in dispatch._call_reason("triton", torch.device("cuda"), torch.float64) or \
        dispatch.unavailable_reason("triton")


@pytest.mark.skipif(_ext.load()[0] is None, reason="extension not built")
@pytest.mark.parametrize("name", ["soft_read", "soft_write", "content_address"])
@pytest.mark.parametrize("part", ["fwd", "bwd"])
def test_cpp_schemas_equal_the_python_specs(name, part):
    assert str(getattr(torch.ops.ncl, f"{name}_{part}").default._schema) == _oplib.schema(name, part)


@pytest.mark.skipif(_ext.load()[0] is None, reason="extension not built")
def test_norm_eps_has_one_value():
    assert _ext.load()[0].NORM_EPS == reference.NORM_EPS
