"""Scarce labels (``ncl train --labels F``): which examples carry interface labels, that the others add nothing
to the auxiliary loss, and the run's options."""

import json
from dataclasses import replace

import pytest
import torch

from ncl import cli, tasks
from ncl.training import TrainConfig, aux_loss, build_model, encode, load_checkpoint, tokenizer
from ncl.training.data import AUX_TARGETS
from ncl.training.labels import drop_labels, label_draw, labelled

TINY = ["--layers", "2", "--split", "1", "--batch-size", "4", "--threads", "1", "--quiet", "--log-every", "1"]


def _examples(task="long_add", count=2000, seed=3):
    return tasks.get(task).generate("train", count, seed=seed)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_the_fraction_labelled(fraction):
    examples = list({e.prompt: e for e in _examples(count=10000)}.values())  # a prompt repeated is one draw
    keep = labelled(examples, seed=0, fraction=fraction)
    n = len(examples)
    sd = (fraction * (1 - fraction) / n) ** 0.5
    assert abs(keep.float().mean().item() - fraction) < 4 * sd + 1e-9


def test_the_choice_is_fixed_by_seed_and_prompt():
    examples = _examples(count=500)
    a = labelled(examples, seed=0, fraction=0.3)
    assert torch.equal(a, labelled(examples, seed=0, fraction=0.3))  # the same run, or a resumed one
    assert not torch.equal(a, labelled(examples, seed=1, fraction=0.3))  # another seed labels others
    # the same prompt is labelled wherever it is drawn, and F only moves the threshold
    again = labelled(list(reversed(examples)), seed=0, fraction=0.3)
    assert torch.equal(again, a.flip(0))
    assert bool((labelled(examples, seed=0, fraction=0.6) | ~a).all())  # labelled at 0.3: also at 0.6
    assert not labelled(examples, 0, 0.0).any() and labelled(examples, 0, 1.0).all()
    assert all(0.0 <= label_draw(e.prompt, 0) < 1.0 for e in examples[:20])
    with pytest.raises(ValueError, match="labels must be in"):
        labelled(examples, 0, 1.5)


@pytest.mark.parametrize("task", ["long_add", "mix_nested"])
def test_rows_without_labels_add_nothing(task):
    """The auxiliary loss of a batch whose unlabelled rows have their targets dropped does not depend on what
    those targets were, and a batch with no labelled row gives exactly 0 (finite, no gradient)."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(task=task, layers=2, split=1))
    model.computer.config = replace(model.computer.config, top_k=1, max_steps=24)
    tok, names = tokenizer(), model.computer.program_names
    cfg = model.computer.config
    kw = dict(calls=cfg.calls, slots=cfg.slots, cue_focus=cfg.call_read == "text") if cfg.calls else {}
    examples = tasks.get(task).generate("train", 4, seed=1)
    b = encode(examples, tok, names, **kw)
    keep = torch.tensor([True, False, True, False])
    dropped = drop_labels(b, keep)
    for key in AUX_TARGETS:
        if key in b:
            assert bool((dropped[key][~keep] == -100).all()), key
            assert torch.equal(dropped[key][keep], b[key][keep]), key
    for key in ("input_ids", "attention_mask", "read_mask", "labels"):
        assert torch.equal(dropped[key], b[key]), key
    out = model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])
    comp = out["computer"]
    # other targets on the unlabelled rows (another batch's, shuffled): the same loss once dropped
    other = encode(list(reversed(examples)), tok, names, **kw)
    mixed = {k: (torch.where(keep.view(-1, *[1] * (v.dim() - 1)), b[k], other[k])
                 if k in AUX_TARGETS and v.shape == b[k].shape else b[k]) for k, v in other.items()}
    assert not torch.equal(aux_loss(comp, mixed), aux_loss(comp, b))  # the targets do matter
    assert torch.equal(aux_loss(comp, drop_labels(mixed, keep)), aux_loss(comp, dropped))
    none = aux_loss(comp, drop_labels(b, torch.zeros(4, dtype=torch.bool)))
    assert none.item() == 0.0 and not none.requires_grad


def test_options(tmp_path):
    with pytest.raises(ValueError, match="labels must be a fraction"):
        TrainConfig(labels=1.5).validate()
    with pytest.raises(ValueError, match="no interface labels"):
        TrainConfig(model="llama", labels=0.5).validate()
    with pytest.raises(ValueError, match="labels=0 without discover, needs computer.answer_grad"):
        TrainConfig(labels=0.0).validate()
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "sort", "--out", str(tmp_path / "x"), "--labels", "2"])
    # --labels 0 without the interface search gives the heads the answer's gradient (tests/test_discover.py: with)
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path / "a"), *TINY, "--steps", "2",
                     "--labels", "0", "--discover", "0"]) == 0
    cfg = load_checkpoint(tmp_path / "a")["config"]
    assert cfg["labels"] == 0.0 and cfg["computer"]["answer_grad"] is True
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert [x["aux_loss"] for x in lines] == [0.0, 0.0]  # no example carries labels
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path / "b"), *TINY, "--steps", "1",
                     "--labels", "0.5", "--labels-only"]) == 0
    assert load_checkpoint(tmp_path / "b")["config"]["computer"]["answer_grad"] is False


def test_leave_one_out_baseline():
    from ncl.training.reinforce import leave_one_out

    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert torch.allclose(leave_one_out(r), torch.tensor([1 / 3, 2 / 3, 2 / 3, 1 / 3]))
    assert torch.equal(leave_one_out(torch.tensor([1.0])), torch.tensor([0.0]))


def _tooluse_model():
    torch.manual_seed(0)
    return build_model(TrainConfig(task="long_add", model="tooluse", layers=2, split=1))


def test_sampled_calls_are_reproducible_and_scored_by_the_vm():
    from ncl.training.reinforce import sample_calls
    from ncl.training.tooluse import run_calls

    model, tok = _tooluse_model(), tokenizer()
    examples = tasks.get("long_add").generate("train", 6, seed=2)
    prompts = [e.prompt for e in examples]
    a = sample_calls(model, tok, prompts, [e.answer for e in examples], torch.Generator().manual_seed(5))
    b = sample_calls(model, tok, prompts, [e.answer for e in examples], torch.Generator().manual_seed(5))
    c = sample_calls(model, tok, prompts, [e.answer for e in examples], torch.Generator().manual_seed(6))
    assert a.text == b.text and a.text != c.text
    assert model.training  # sampling leaves the training mode as it was
    # the reward is whether the VM printed the answer given
    printed = [run_calls(t) for t in a.text]
    again = sample_calls(model, tok, prompts, [p if p is not None else "-" for p in printed],
                         torch.Generator().manual_seed(5))
    assert again.reward.tolist() == [float(p is not None) for p in printed]
    # the sampled tokens are the labels, each predicted by the position before it
    P = 1 + max(len(tok.encode(p)) for p in prompts)
    for i, t in enumerate(a.text):
        row = a.labels[i][a.labels[i] >= 0].tolist()
        assert torch.equal(a.input_ids[i, P:P + len(row)], torch.tensor(row))
        assert row[-1] == tok.eos_token_id or len(row) == a.labels.shape[1] - P  # <eos>, or the whole budget
        assert tok.decode([x if x < tok.vocab_size else tok.unk_token_id for x in row
                           if x != tok.eos_token_id]) == t


def test_reinforce_raises_the_rewarded_call():
    """One gradient step on L_rl makes the call that earned the reward more likely and the other less."""
    from ncl.training.reinforce import Samples, reinforce_loss

    model, tok = _tooluse_model(), tokenizer()
    prompt = [tok.bos_token_id] + tok.encode("add 1 2 =")
    calls = ["long_add(1, 2)", "long_sub(1, 2)"]
    rows = [prompt + tok.encode(c) + [tok.eos_token_id] for c in calls]
    T = max(len(r) for r in rows)
    ids = torch.full((2, T), tok.pad_token_id)
    att, labels = torch.zeros(2, T, dtype=torch.long), torch.full((2, T), -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)], att[i, :len(r)] = torch.tensor(r), 1
        labels[i, len(prompt) - 1:len(r) - 1] = torch.tensor(r[len(prompt):])
    samples = Samples(calls, torch.tensor([1.0, 0.0]), ids, att, labels)

    def logp():
        with torch.no_grad():
            logits = model.llama(ids, attention_mask=att).logits
            return -torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                      reduction="none").view(2, T).sum(1)

    before = logp()
    reinforce_loss(model, samples).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad
    after = logp()
    assert after[0] > before[0] and after[1] < before[1]
    # equal rewards: no advantage, no gradient
    model.zero_grad()
    flat = Samples(calls, torch.tensor([1.0, 1.0]), ids, att, labels)
    assert reinforce_loss(model, flat).item() == 0.0


def test_tooluse_trains_with_scarce_labels(tmp_path):
    assert cli.main(["train", "--task", "long_add", "--model", "tooluse", "--out", str(tmp_path / "t"), *TINY,
                     "--steps", "2", "--labels", "0.25"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert len(lines) == 2 and all(0.0 <= x["reward"] <= 1.0 for x in lines if x["reward"] is not None)
    assert load_checkpoint(tmp_path / "t")["config"]["labels"] == 0.25
    # a batch whose every example is labelled samples nothing (no REINFORCE term), and trains on
    from ncl.training.reinforce import reinforce_loss, sample_calls

    none = sample_calls(_tooluse_model(), tokenizer(), [], [], torch.Generator().manual_seed(0))
    assert none.text == [] and reinforce_loss(_tooluse_model(), none).item() == 0.0
    assert cli.main(["train", "--task", "long_add", "--model", "tooluse", "--out", str(tmp_path / "u"), *TINY,
                     "--steps", "2", "--labels", "0.99"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "u" / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert [x["reward"] for x in lines] == [None, None]


def test_the_answer_reaches_only_the_heads_named():
    """answer_grad_heads: the answer's gradient reaches the write gates' logits only when "write" is named, and
    the program head only when "program" is; the CLI spells the same names."""
    from ncl.cli_types import ANSWER_GRAD_HEADS as CLI_HEADS
    from ncl.computer.config import ANSWER_GRAD_HEADS

    assert CLI_HEADS == ANSWER_GRAD_HEADS
    tok = tokenizer()
    examples = tasks.get("long_add").generate("train", 3, seed=1)
    grads = {}
    for heads in (ANSWER_GRAD_HEADS, ("read", "args")):
        torch.manual_seed(0)
        computer = replace(TrainConfig().computer, answer_grad=True, answer_grad_heads=heads)
        model = build_model(TrainConfig(task="long_add", layers=2, split=1, computer=computer))
        model.computer.config = replace(model.computer.config, max_steps=24)
        b = encode(examples, tok, model.computer.program_names)
        # open every write gate, so the tape (and with it the answer) depends on them
        torch.nn.init.constant_(model.computer.gate_head.bias, 3.0)
        model(b["input_ids"], b["attention_mask"], b["read_mask"], labels=b["labels"])["loss"].backward()
        c = model.computer
        grads[heads] = {name: (p.grad is not None and bool(p.grad.abs().sum() > 0)) for name, p in
                        (("write", c.gate_head.weight), ("program", c.program_head.weight),
                         ("args", c.source_head.weight), ("read", c.read_head.weight))}
    assert all(grads[ANSWER_GRAD_HEADS].values()), grads
    assert grads[("read", "args")] == {"write": False, "program": False, "args": True, "read": True}
    with pytest.raises(ValueError, match="answer_grad_heads must be among"):
        replace(TrainConfig().computer, answer_grad_heads=("gates",))
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "sort", "--out", "x", "--answer-grad-heads", "gates"])


def _result(model="augmented", labels=1.0, answer_grad=False, heads=None, seed=0, splits=None, task="long_add"):
    from ncl.computer.config import ANSWER_GRAD_HEADS

    return {"task": task, "model": model, "seed": seed, "aux": 1.0, "labels": labels, "answer_grad": answer_grad,
            "answer_grad_heads": list(heads or ANSWER_GRAD_HEADS), "train_steps": 150, "train_time_s": 10.0,
            "params": 1, "splits": splits or {"test": {"accuracy": 0.5 + 0.1 * seed, "count": 10, "by_size": {}},
                                              "ood_4x": {"accuracy": 0.1, "count": 10, "by_size": {}}}}


def test_report_columns_and_the_figure_against_F(tmp_path, monkeypatch, capsys):
    from ncl.training import report

    assert report.model_label(_result()) == "augmented"
    assert report.model_label(_result(labels=0.01, answer_grad=True)) == "augmented (F=0.01, answer grad)"
    assert report.model_label(_result(labels=0.01)) == "augmented (F=0.01, labels only)"
    assert report.model_label(_result(labels=0.01, answer_grad=True, heads=("values", "args", "read"))) == \
        "augmented (F=0.01, answer grad but not to write program pointers halt)"
    assert report.model_label(_result(labels=0.01, answer_grad=True, heads=("read",))) == \
        "augmented (F=0.01, answer grad to read)"
    assert report.model_label(_result(model="tooluse", labels=0.1)) == "tooluse (F=0.1)"
    assert report.labels_family(_result(labels=0.1, answer_grad=True)) == ("augmented, answer grad", 0.1)
    assert report.labels_family(_result(labels=0.1, answer_grad=True, heads=("read", "args"))) is None  # ablation
    assert report.labels_family(_result(labels=0.1, answer_grad=True, heads=("read",))) == \
        ("augmented, answer grad to read", 0.1)
    assert report.labels_family(_result(model="tooluse", labels=0.0)) == ("tooluse", 0.0)
    searched = {**_result(model="tooluse", labels=0.0), "discover": 32}
    assert report.labels_family(searched) == ("tooluse, interface search", 0.0)
    assert report.model_label(searched) == "tooluse (F=0, interface search)"
    assert report.model_label({**_result(labels=0.0), "discover": 32}) == "augmented (F=0, interface search)"
    assert report.labels_family(_result(model="llama")) == ("llama", None)
    runs = [_result(labels=f, seed=s) for f in (1.0, 0.1) for s in (0, 1)] + \
        [_result(model="tooluse", labels=0.1), _result(model="llama")]
    mix = {"test": {"accuracy": 0.5, "count": 10, "by_size": {}},
           "sort/ood_4x": {"accuracy": 0.2, "count": 10, "by_size": {}},
           "long_add/ood_4x": {"accuracy": 0.4, "count": 10, "by_size": {}}}
    runs.append(_result(task="mix", labels=0.01, splits=mix))
    for i, r in enumerate(runs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "eval.json").write_text(json.dumps(r))
    drawn = {}
    import ncl.training.plots as plots

    real = plots.plot_by_labels
    monkeypatch.setattr(plots, "plot_by_labels",
                        lambda points, splits, path: drawn.update(points=points) or real(points, splits, path))
    png = report.plot_by_labels(tmp_path, tmp_path / "f.png")
    assert png.stat().st_size > 1000
    points = drawn["points"]
    assert points["long_add"]["augmented, labels only"][0.1]["test"] == [0.5, 0.6]  # one entry per seed
    assert points["long_add"]["llama"][None]["test"] == [0.5]
    assert points["mix"]["augmented, labels only"][0.01]["ood_4x"] == [pytest.approx(0.3)]  # its tasks' mean
    table = report.labels_table(report.collect(tmp_path)).splitlines()
    assert table[0] == "| task | model | F = 1 | F = 0.1 | F = 0.01 | no labels |"
    assert table[2:] == ["| long_add | augmented, labels only | 55.0 / 10.0 ×2 | 55.0 / 10.0 ×2 | – | – |",
                         "| long_add | tooluse | – | 50.0 / 10.0 ×1 | – | – |",
                         "| long_add | llama | – | – | – | 50.0 / 10.0 ×1 |",
                         "| mix | augmented, labels only | – | – | 50.0 / 30.0 ×1 | – |"]
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{report.LABELS_BEGIN}\nold\n{report.LABELS_END}\noutro\n")
    assert report.write_into(doc, tmp_path, labels=True) == "\n".join(table)
    assert report.readout_of(doc.read_text(), labels=True) == "\n".join(table)
    assert doc.read_text().startswith("intro\n") and doc.read_text().endswith("outro\n")
    from ncl import cli

    doc.write_text(f"{report.LABELS_BEGIN}\n{report.LABELS_END}\n")
    assert cli.main(["report", str(tmp_path), "--labels-table", str(doc)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("\n".join(table))
    assert report.readout_of(doc.read_text(), labels=True) == "\n".join(table)
