"""scripts/chunk_sweep.py, the checkpoint-interval timings behind ncl.machine.run.checkpoint_chunk: a tiny sweep,
its JSON and its plot."""

from __future__ import annotations

import json

import pytest
import torch

from ncl_kernels import dispatch
from _script_support import load_script

pytestmark = pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None, reason="needs the cpp backend")


@pytest.fixture
def torch_modes():
    """main() sets torch's thread count and flush-to-zero mode for the process, as a script does: given back after,
    or a later test in the same worker would find torch's arithmetic flushing subnormals."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


def test_the_padded_program_has_the_lines_asked_for():
    script = load_script("scripts/chunk_sweep.py")
    import ncl
    from ncl.machine import bench

    config = ncl.MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    assert ncl.assemble(script.padded_loop(9), config).length == 9
    assert ncl.assemble(script.padded_loop(20), config).length == 20
    with pytest.raises(ValueError, match="lines"):
        script.padded_loop(8)


def test_a_small_sweep_times_every_chunk_and_writes_json_and_a_plot(tmp_path, capsys):
    script = load_script("scripts/chunk_sweep.py")
    rows = script.sweep([9, 12], [2, 4], rounds=1, calls=2, batch=2, steps=6)
    assert [(r["lines"], r["inputs"], r["chunk"]) for r in rows] == [
        (lines, inputs, k) for lines in (9, 12) for inputs in ("sharp", "soft") for k in (2, 4)]
    for r in rows:
        assert 0 < r["min_ms"] <= r["q1_ms"] <= r["median_ms"] <= r["q3_ms"]
    script.plot(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_writes_the_rows_and_each_lengths_default_chunk(tmp_path, monkeypatch, capsys, torch_modes):
    script = load_script("scripts/chunk_sweep.py")
    seen, sweep = {}, script.sweep

    def tiny(lines, chunks, rounds, calls, batch):
        seen.update(lines=lines, chunks=chunks, rounds=rounds, calls=calls, batch=batch)
        return sweep(lines, chunks, rounds, calls, batch, steps=4)

    monkeypatch.setattr(script, "sweep", tiny)
    out = tmp_path / "sweep.json"
    assert script.main(["--lines", "9", "--chunks", "2", "--rounds", "1", "--calls", "1", "--batch", "2",
                        "--json", str(out)]) == 0
    assert seen == {"lines": [9], "chunks": [2], "rounds": 1, "calls": 1, "batch": 2}
    result = json.loads(out.read_text())
    assert result == json.loads(capsys.readouterr().out)
    assert result["default_chunk"] == {"9": 64}
    assert len(result["rows"]) == 2
    with pytest.raises(SystemExit):
        script.main(["--chunks", "0"])
    assert float(torch.tensor([1e-39]) * 1.0) == 0.0  # the sweep's flush, which the fixture turns off again
