"""``ncl bench train``: the step's breakdown adds up, and each part is where it should be."""

import json

import pytest

from ncl import cli
from ncl.training.bench import PARTS, bench_train


@pytest.mark.slow
def test_the_breakdown_adds_up_to_the_step():
    r = bench_train("long_add", repeats=1, warmup=1)
    aug, parts = r["augmented"], r["augmented"]["breakdown"]
    assert set(parts) == set(PARTS)
    # the default trains the heads on their labels alone: the machine runs, but the answer's loss has no path
    # back into it
    assert parts["machine_fwd"] > 0 and parts["machine_bwd"] == 0
    # one timed step: the parts split its sections, so they add up to it but for the time between sections
    assert abs(sum(parts.values()) - aug["ms_step"]) < 0.05 * aug["ms_step"], (parts, aug["ms_step"])
    assert r["machine_share"] == pytest.approx((parts["machine_fwd"] + parts["machine_bwd"]) / aug["ms_step"])
    assert r["step_ratio"] == pytest.approx(aug["ms_step"] / r["plain"]["ms_step"])
    grad = r["augmented_answer_grad"]["breakdown"]
    assert all(grad[p] > 0 for p in PARTS), grad  # each part found some work (the LLaMA's is the remainder)
    assert r["step_ratio_answer_grad"] == pytest.approx(r["augmented_answer_grad"]["ms_step"] / r["plain"]["ms_step"])


def test_the_cli_prints_the_json_the_issue_names(capsys, monkeypatch):
    """The CLI passes its options through and prints bench_train's result (the timing itself is tested above)."""
    seen = {}

    def fake(task, repeats, progress):
        seen.update(task=task, repeats=repeats)
        return {"augmented": {"ms_step": 2.0, "breakdown": dict.fromkeys(PARTS, 0.4)}, "plain": {"ms_step": 1.0},
                "machine_share": 0.4, "step_ratio": 2.0}

    monkeypatch.setattr("ncl.training.bench.bench_train", fake)
    assert cli.main(["bench", "train", "--task", "reverse", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert seen == {"task": "reverse", "repeats": cli.BENCH_QUICK["train_repeats"]}
    assert set(out) >= {"augmented", "plain", "machine_share", "step_ratio"}
