"""scripts/program_head_refit.py: a mix model's program head refitted alone on the frozen encoder's pieces."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from ncl import tasks
from ncl.tasks import compose
from ncl.computer import word_encoder
from ncl.computer.call_heads import COUNTS
from ncl.tasks.mix import single_call
from ncl.tasks.phrasing import TEMPLATES
from ncl.tokenizers import SPECIAL_TOKENS
from ncl.training import TrainConfig
from ncl.training.config import default_computer
from ncl.training.data import tokenizer
from ncl.training.factory import build_model
from _script_support import load_script

pytestmark = pytest.mark.skipif(not word_encoder.available(),
                                reason=f"no encoder weights ({word_encoder.PACKAGE_INSTALL})")


def _script():
    return load_script("scripts/program_head_refit.py")


def test_the_refit_pools_the_pieces_the_models_program_head_pools():
    """For one-call prompts of held-out wording and four-call ones, the script's pieces, step after step, projected
    by a model's own projection, are the model's program states (``program_norm=False``) at the prompt's words: the
    tokens where a piece starts that the tape does not hold (a trained model's tape holds each number's digits and
    the character that closes it; an untrained one's gates are random, so the test marks them itself). Words such
    as ``sum`` are one token. Each call's program and operand count are the problem's."""
    torch.manual_seed(0)
    computer = replace(default_computer(), word_view="hybrid", program_norm=False)
    model = build_model(TrainConfig(task="mix", layers=2, computer=computer))
    mix, rng = tasks.get("mix"), random.Random(3)
    examples = [single_call(name, mix.tasks[name].sample("test", rng), TEMPLATES[name][i])
                for name, i in (("long_sub", 7), ("sum", 7), ("reverse", 6), ("shortest_path", 6), ("sum", 2))]
    examples += [compose.sample("compose_4", rng) for _ in range(2)]
    names = list(model.computer.program_names)
    feats = _script().features(examples, {n: i for i, n in enumerate(names)})
    tok = tokenizer()
    ids, mask = tok.encode_batch([e.prompt for e in examples], add_bos=True, padding_side="left")
    read = torch.zeros_like(mask)
    read[:, -1] = 1
    with torch.no_grad():
        states = model(ids, mask, read)["computer"].heads.prompt.chain.inputs.program_h
        T = states.shape[1]
        for r, (e, calls) in enumerate(zip(examples, feats)):
            pieces = torch.cat([p for p, _, _ in calls])  # a chain's steps part its words, in order
            pieces_of = [tok.id_to_token(int(i)) if m else "" for i, m in zip(ids[r], mask[r])]
            text = "".join(" " * len(p) if p in SPECIAL_TOKENS else p for p in pieces_of)  # a token's first char
            at = [len("".join(pieces_of[:t])) for t in range(T)]  # ... sits at text[at[t]]
            words = [t for t in range(T) if states[r, t].any() and not text[at[t]].isdigit()
                     and not text[at[t] - 1].isdigit()]
            assert len(pieces) == len(words) >= 1 and len(calls) == len(e.calls), e.prompt
            assert torch.allclose(model.pretrained_words.project(pieces), states[r, words], atol=1e-5), e.prompt
            assert [names[y] for _, _, y in calls] == [c.program for c in e.calls]
            assert [c for _, c, _ in calls] == [min(sum(a < len(e.operands) for a in c.args), COUNTS - 1)
                                                 for c in e.calls]


def test_the_script_reports_each_variant(tmp_path):
    out = tmp_path / "refit.json"
    args = ["--examples", "24", "--seeds", "1", "--count", "1", "--steps", "3", "--json", str(out)]
    assert _script().main(args) == 0
    got = json.loads(out.read_text())
    assert set(got["results"]) == {"norm", "no norm"}
    for r in got["results"].values():
        assert all(0 <= x <= 1 for k in ("held_out", "trained", "compose_3", "compose_4") for x in r[k])
        assert len(r["held_out"]) == 1
