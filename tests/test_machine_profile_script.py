"""scripts/machine_profile.py, which splits a fused machine run's time into its kernels and the host's part (run by
scripts/gpu_check.sh): here on the CPU kernels, at small sizes, the figures of one profiled call checked against
each other (one call's own parts, never a time against another call's)."""

from __future__ import annotations

import json

import pytest

from ncl_kernels import dispatch
from _script_support import load_script

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")


def _script():
    return load_script("scripts/machine_profile.py")


def test_it_splits_each_call_into_the_kernels_and_the_rest(tmp_path):
    out = tmp_path / "profile.json"
    assert _script().main(["--device", "cpu", "--batch", "2", "--steps", "8", "--repeats", "1", "--top", "40",
                           "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["device"], result["backend"], result["gpu"]) == ("cpu", "cpp", None)
    for kind in ("sharp", "soft"):
        for mode, ops in (("fwd", {"ncl::machine_run_fwd"}), ("fwdbwd", {"ncl::machine_run_fwd",
                                                                         "ncl::machine_run_bwd"})):
            r = result[kind][mode]
            names = [e["name"] for e in r["top"]]
            assert ops <= set(names), names  # the whole-run ops ran, and only the backward's pass has the backward's
            assert ("ncl::machine_run_bwd" in names) == (mode == "fwdbwd")
            ms = [e["ms"] for e in r["top"]]
            assert ms == sorted(ms, reverse=True)
            kernel = sum(e["ms"] for e in r["top"] if e["name"] in ops)
            # On a CPU the kernels are the whole-run ops' self time, all of it whole-run, inside the call's wall time.
            assert r["kernel_ms"] == pytest.approx(kernel, abs=2e-3) and r["kernel_ms"] > 0
            assert r["machine_kernel_ms"] == r["kernel_ms"]
            assert r["launches"] == sum(e["count"] for e in r["top"] if e["name"] in ops) >= len(ops)
            assert r["host_ms"] == pytest.approx(r["wall_ms"] - r["kernel_ms"], abs=2e-3) and r["host_ms"] > 0
            assert 0 < r["wall"]["min"] <= r["wall"]["median"] <= r["wall"]["max"]


def test_it_rejects_unknown_inputs():
    with pytest.raises(SystemExit):
        _script().main(["--device", "cpu", "--inputs", "dense"])
