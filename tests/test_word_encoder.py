"""The frozen pretrained sentence encoder behind ``word_view="pretrained"`` (ncl.computer.word_encoder): its BERT
forward against transformers', the prompt's numbers replaced and its tokens aligned to word pieces, the weights'
checks, and that only the projection learns and is saved."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ncl.computer import word_encoder
from ncl.computer.call_heads import CallHeads
from ncl.computer.word_encoder import NUMBER, WIDTH, PretrainedWords, load_encoder, prompt_texts
from ncl.tokenizers import CharTokenizer
from ncl.training import TrainConfig
from ncl.training.config import default_computer
from ncl.training.factory import build_model


needs_encoder = pytest.mark.skipif(not word_encoder.available(),
                                   reason=f"no encoder weights ({word_encoder.PACKAGE_INSTALL})")


def _batch(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask of ``texts`` in the built-in tokenizer."""
    tok = CharTokenizer()
    rows = [tok.encode(t) for t in texts]
    T = max(map(len, rows))
    ids, mask = torch.zeros(len(rows), T, dtype=torch.long), torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.tensor(r)
        mask[i, T - len(r):] = 1
    return ids, mask


def test_prompt_texts_replace_each_number_and_place_every_token():
    ids, mask = _batch(["Add 4071 and 9, then sort 12 3.", "sum 7."])
    texts, starts = prompt_texts(ids, mask, ids.shape[1], PretrainedWords(4).vocab)
    assert texts == [f"Add {NUMBER} and {NUMBER}, then sort {NUMBER} {NUMBER}.", f"sum {NUMBER}."]
    tok, row = CharTokenizer(), ids[0].tolist()
    for t, c in enumerate(starts[0]):  # a token's text starts where it says, a number's digits at the number
        piece = tok.id_to_token(row[t])
        assert texts[0][c] == (NUMBER if piece.isdigit() else piece[0])
    pad = ids.shape[1] - 4  # "sum", " ", "7", "."
    assert starts[1][:pad] == [None] * pad and starts[1][pad:] == [0, 3, 4, 5]  # "sum" is one token


def test_a_missing_or_wrong_encoder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(word_encoder.ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=word_encoder.ENV):
        word_encoder._read_files()
    monkeypatch.delenv(word_encoder.ENV)
    if not word_encoder.available():
        pytest.skip("the package is not installed")
    monkeypatch.setattr(word_encoder, "PACKAGE_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        word_encoder._read_files()


def test_setup_installs_the_checked_package():
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    assert word_encoder.PACKAGE_INSTALL.removeprefix("pip install ") in setup


@needs_encoder
def test_the_encoder_is_berts_forward():
    transformers = pytest.importorskip("transformers")
    import json

    _, ours = load_encoder()
    config = json.loads(word_encoder._read_files()["config.json"])
    theirs = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False).eval()
    names = {  # the BertModel's names of ours, inverted from load_bert's table
        "embeddings.word_embeddings.weight": ours.word.weight,
        "embeddings.position_embeddings.weight": ours.position.weight,
        "embeddings.token_type_embeddings.weight": ours.segment.weight,
        "embeddings.LayerNorm.weight": ours.norm.weight, "embeddings.LayerNorm.bias": ours.norm.bias}
    state = theirs.state_dict()
    for key in state:
        if key in names:
            state[key] = names[key]
    for i, layer in enumerate(ours.layers):
        for ours_name, theirs_name in (("q", "attention.self.query"), ("k", "attention.self.key"),
                                       ("v", "attention.self.value"), ("o", "attention.output.dense"),
                                       ("norm1", "attention.output.LayerNorm"), ("up", "intermediate.dense"),
                                       ("down", "output.dense"), ("norm2", "output.LayerNorm")):
            for p in ("weight", "bias"):
                state[f"encoder.layer.{i}.{theirs_name}.{p}"] = getattr(layer[ours_name], p)
    theirs.load_state_dict(state)
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (3, 11))
    mask = torch.ones(3, 11)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    got = ours(ids, mask)
    keep = mask.bool()
    torch.testing.assert_close(got[keep], want[keep], atol=2e-5, rtol=1e-4)


@needs_encoder
def test_a_word_reads_the_same_beside_a_number_of_any_length():
    torch.manual_seed(0)
    words = PretrainedWords(16)
    ids, mask = _batch(["What is 4071 plus 98?", "What is 4 plus 98765432109876543210?", "Turn 5 3 around."])
    out = words(ids, mask, ids.shape[1] - 1)  # the last token ("?" or ".") after P: zero
    T = ids.shape[1]
    a, b = T - len("What is 4071 plus 98?"), T - len("What is 4 plus 98765432109876543210?")
    plus_a, plus_b = a + len("What is 4071 "), b + len("What is 4 ")
    torch.testing.assert_close(out[0, a:a + 8], out[1, b:b + 8])  # "What is "
    torch.testing.assert_close(out[0, plus_a:plus_a + 4], out[1, plus_b:plus_b + 4])  # "plus"
    assert out[0, plus_a].abs().sum() > 0 and out[0, plus_a + 1:plus_a + 4].abs().sum() == 0  # a piece, once
    assert out[0, :a].abs().sum() == 0 and out[:, -1].abs().sum() == 0  # the padding, and from P on
    assert not torch.allclose(out[0, plus_a], out[2, -len("around.")])  # another word, another state


@needs_encoder
def test_only_the_projection_learns_and_is_saved():
    torch.manual_seed(0)
    cfg = TrainConfig(task="mix", layers=2, computer=replace(default_computer(), word_view="pretrained"))
    model = build_model(cfg)
    assert not any("encoder" in k for k in model.state_dict())
    assert {k for k in model.state_dict() if k.startswith("pretrained_words.")} == {
        "pretrained_words.project.weight", "pretrained_words.project.bias"}
    ids, mask = _batch(["What is 12 plus 30? =", "Turn 5 3 9 around. ="])
    read = torch.zeros_like(mask)
    read[:, -1] = 1
    out = model(ids, mask, read)
    heads = out["computer"].heads.prompt.chain
    turn = ids.shape[1] - len("Turn 5 3 9 around. =")
    assert heads.inputs.words[1, turn:turn + 4].tolist() == [1, 0, 0, 0]  # a word piece is one word, at its start
    loss = (heads.pi * torch.randn_like(heads.pi)).sum()
    loss.backward()
    assert model.pretrained_words.project.weight.grad.abs().sum() > 0
    _, encoder = load_encoder()
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    assert model.pretrained_words.project.weight.shape == (model.llama.config.hidden_size, WIDTH)


@needs_encoder
def test_hybrid_reads_the_program_from_the_encoder_and_the_pointers_from_the_collapsed_prompt():
    """``word_view="hybrid"``: the program head pools the encoder's word pieces (one per piece), the pointers
    every word character of the collapsed prompt; the program's gradient reaches the encoder's projection, the
    pointers' never does, but reaches the layers below the computer (the collapsed prompt's pass)."""
    torch.manual_seed(0)
    cfg = TrainConfig(task="mix", layers=2, computer=replace(default_computer(), word_view="hybrid"))
    model = build_model(cfg)
    ids, mask = _batch(["What is 12 plus 30? =", "Turn 5 3 9 around. ="])
    read = torch.zeros_like(mask)
    read[:, -1] = 1
    chain = model(ids, mask, read)["computer"].heads.prompt.chain
    inputs, turn = chain.inputs, ids.shape[1] - len("Turn 5 3 9 around. =")
    assert inputs.program_words[1, turn:turn + 4].tolist() == [1, 0, 0, 0]  # the program: a word piece, once
    assert inputs.words[1, turn:turn + 4].tolist() == [1, 1, 1, 1]  # the pointers: every character
    assert (inputs.program_words <= inputs.words).all()
    chain.pi[:, 0].log().sum().backward(retain_graph=True)
    assert model.pretrained_words.project.weight.grad.abs().sum() > 0
    model.zero_grad()
    pointers = chain.pointers[:, 0]
    torch.log_softmax(pointers.masked_fill(pointers.isinf(), -1e9), -1)[..., 1].sum().backward()
    assert model.pretrained_words.project.weight.grad is None  # the pointers never read the encoder
    assert model.llama.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0  # but the collapsed prompt


@needs_encoder
def test_program_norm_off_pools_the_projected_pieces_as_they_are():
    """``program_norm=False`` (mix's default): the states the program head pools are the encoder's projected
    pieces as they are; with ``True``, the computer's LayerNorm of each (zero still where no piece starts).
    Without ``word_view="hybrid"`` the option is a clear ValueError."""
    ids, mask = _batch(["What is 12 plus 30? =", "Turn 5 3 9 around. ="])
    read = torch.zeros_like(mask)
    read[:, -1] = 1
    for normed in (True, False):
        torch.manual_seed(0)
        computer = replace(default_computer(), word_view="hybrid", program_norm=normed)
        model = build_model(TrainConfig(task="mix", layers=2, computer=computer))
        with torch.no_grad():
            model.computer.norm.bias.add_(torch.randn_like(model.computer.norm.bias))  # a norm that moves states
            got = model(ids, mask, read)["computer"].heads.prompt.chain.inputs.program_h
            pieces = model.pretrained_words(ids, mask, ids.shape[1] - 1)[:, :got.shape[1]]  # (the heads' tokens)
        has = (pieces != 0).any(-1, keepdim=True)
        want = torch.where(has, model.computer.norm(pieces), 0.0) if normed else pieces
        assert has.sum() >= 8 and torch.allclose(got, want, atol=1e-6), normed
        assert not torch.allclose(got, torch.where(has, model.computer.norm(pieces), 0.0) if not normed else pieces)
    with pytest.raises(ValueError, match="program_norm"):
        replace(default_computer(), word_view="pretrained", program_norm=False)


def test_program_states_come_together_and_only_with_hybrid():
    """The program's own states and words are given together, to a mean-pool head, and a computer takes them
    only with ``word_view="hybrid"``: else a clear ValueError naming them."""
    heads, h = CallHeads(8, 3, 2, program_pool="mean"), torch.randn(1, 5, 8)
    mask, ends = torch.ones(1, 5), torch.zeros(1, 5)
    with pytest.raises(ValueError, match="program_h"):
        heads(h, mask, ends, 3, 2, mask, program_h=h)
    with pytest.raises(ValueError, match="program_h"):
        CallHeads(8, 3, 2)(h, mask, ends, 3, 2, mask, program_h=h, program_words=mask)
    model = build_model(TrainConfig(task="mix", layers=2))  # word_view="collapsed"
    hidden = torch.randn(1, 5, model.llama.config.hidden_size)
    with pytest.raises(ValueError, match="program_states"):
        model.computer(hidden, mask, ends, program_states=hidden)
