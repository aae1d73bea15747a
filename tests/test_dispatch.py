import pytest
import torch

import ncl_kernels
from ncl_kernels import _ext, dispatch
from ncl_kernels.memory import reference


def test_info_lists_every_backend_with_a_reason():
    info = ncl_kernels.info()
    assert set(info) == set(dispatch.BACKENDS)
    assert info["reference"] == "available"
    assert all(v == "available" or len(v) > 10 for v in info.values())


@pytest.mark.skipif(_ext.load()[0] is None, reason="needs the C++ extension")
def test_ncl_info_names_the_cpu_kernels_copy_and_threads(monkeypatch, capsys):
    import json

    from ncl import cli

    monkeypatch.setenv("NCL_CPU_ISA", "baseline")
    cli.main(["info", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["cpu_kernels"] == f"baseline, {torch.get_num_threads()} threads"
    monkeypatch.delenv("NCL_CPU_ISA")
    cli.main(["info", "--json"])
    assert json.loads(capsys.readouterr().out)["cpu_kernels"].split(",")[0] in ("avx2+fma", "baseline")


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
@pytest.mark.parametrize("part", ["fwd", "bwd"])
def test_the_machine_run_ops_have_cpu_kernels(part):
    """The whole-run ops, defined in Python (ncl_kernels.machine), get their CPU kernels from the extension. (Every
    registered op's kernels: tests/test_op_conformance.py.)"""
    import ncl_kernels.machine  # noqa: F401  (defines ncl::machine_run_fwd/bwd)

    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"ncl::machine_run_{part}", "CPU")


@pytest.mark.skipif(_ext.load()[0] is None, reason="extension not built")
def test_norm_eps_has_one_value():
    assert _ext.load()[0].NORM_EPS == reference.NORM_EPS


def test_missing_extension_falls_back_to_reference_with_a_rebuild_hint(monkeypatch):
    monkeypatch.delenv("NCL_BACKEND", raising=False)
    monkeypatch.setattr(_ext, "_loaded", (None, "ncl_kernels._C could not be loaded (ImportError: gone); "
                                                + _ext.REBUILD_HINT))
    info = ncl_kernels.info()
    assert "pip install --no-build-isolation -e ." in info["cpp"]
    assert "pip install --no-build-isolation -e ." in info["cuda"]
    bank, weights = torch.randn(2, 3, 4), torch.rand(2, 1, 3)
    assert dispatch.select(bank.device, bank.dtype) == "reference"
    torch.testing.assert_close(ncl_kernels.soft_read(bank, weights), reference.soft_read(bank, weights))
    with pytest.raises(dispatch.BackendUnavailable, match="rebuild it with"):
        ncl_kernels.soft_read(bank, weights, backend="cpp")
