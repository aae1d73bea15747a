"""Training on the user's own data (ncl.training.user_data): JSON-lines records with line-numbered errors, answers
written digit by digit, and the worked example (examples/augment_your_model.py) end to end: its own library, data,
BPE tokenizer and transformers LLaMA, trained, evaluated, saved and reloaded (CI: under 3 minutes)."""

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from ncl.tokenizers import CharTokenizer  # noqa: E402
from ncl.training.user_data import answer_ids, read_records  # noqa: E402
from _script_support import load_script  # noqa: E402


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_records_are_read_with_optional_labels(tmp_path):
    path = write(tmp_path / "d.jsonl", [json.dumps({"prompt": "clamp 7 1 5 =", "answer": "5", "program": "clamp",
                                                    "args": [7, 1, 5]}), "", json.dumps({"prompt": "p", "answer": "a"})])
    records = read_records(path, ["clamp"])
    assert len(records) == 2 and records[0]["args"] == [7, 1, 5] and "program" not in records[1]


@pytest.mark.parametrize("line,message", [
    ('{"prompt": "x"}', "d.jsonl:2: missing or non-string field 'answer'"),
    ('{"prompt": "x", "answer": 3}', "d.jsonl:2: missing or non-string field 'answer'"),
    ("not json", "d.jsonl:2: not JSON"),
    ('["prompt", "answer"]', "d.jsonl:2: expected an object"),
    ('{"prompt": "x", "answer": "y", "program": "nope"}', "d.jsonl:2: 'program' must name a library function"),
    ('{"prompt": "x", "answer": "y", "args": [1, -2]}', "d.jsonl:2: 'args' must be a list of non-negative ints"),
])
def test_a_malformed_line_is_named(tmp_path, line, message):
    path = write(tmp_path / "d.jsonl", ['{"prompt": "a", "answer": "b"}', line])
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        read_records(path, ["clamp"])


def test_answers_are_written_digit_by_digit():
    tok = CharTokenizer()
    assert answer_ids(tok, "12 -3") == tok.encode("12 -3")
    with pytest.raises(ValueError, match="not one token"):
        answer_ids(type("Chunky", (), {"encode_raw": staticmethod(lambda text: [1, 2])})(), "7")


def test_the_worked_example_trains_evaluates_saves_and_reloads(tmp_path):
    example = load_script("examples/augment_your_model.py")
    result = example.main(["--seconds", "25", "--out", str(tmp_path)])
    assert result["reloaded_answers_equal"]
    assert result["accuracy"] > 0.5  # it reaches 1.0 within a minute of CPU; the bar leaves room for slow runners
    assert (tmp_path / "model" / "library.py").read_text().strip().startswith("def largest")


LIBRARY = "def largest(a, b, c):\n    return max(max(a, b), c)\n"


def test_ncl_train_and_eval_on_a_jsonl_file_with_a_library(tmp_path, capsys):
    from ncl import cli
    from ncl.hf import AugmentedModel

    (tmp_path / "mylib.py").write_text(LIBRARY)
    lines = [json.dumps({"prompt": f"largest {a} {b} {c} =", "answer": str(max(a, b, c)), "program": "largest",
                         "args": [a, b, c]}) for a, b, c in ((1, 5, 2), (7, 0, 3), (4, 4, 9))]
    write(tmp_path / "train.jsonl", lines)
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(tmp_path / "train.jsonl"), "--eval-data", str(tmp_path / "train.jsonl"),
                     "--library", str(tmp_path / "mylib.py"), "--out", str(out), "--steps", "2", "--batch-size",
                     "2", "--train-max-steps", "32"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["count"] == 3 and 0 <= result["accuracy"] <= 1
    assert (out / "metrics.jsonl").is_file() and (out / "eval.json").is_file()
    model = AugmentedModel.from_pretrained(out)
    assert model.computer.program_names[-1] == "largest" and "gcd" in model.computer.program_names
    assert cli.main(["eval", str(out), "--data", str(tmp_path / "train.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == result["accuracy"]
    write(tmp_path / "bad.jsonl", [lines[0], '{"prompt": "largest 1 2 3 ="}'])
    assert cli.main(["train", "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "r2")]) == 2
    assert "bad.jsonl:2: missing or non-string field 'answer'" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(tmp_path / "r3")]) == 2
    assert "--task or --data is required" in capsys.readouterr().err


def test_ncl_train_data_on_a_local_hugging_face_checkpoint(tmp_path, capsys):
    """--base DIR: a LLaMA checkpoint with its tokenizer.json (a BPE trained here), nothing downloaded."""
    from ncl import cli
    from ncl.hf import AugmentedModel
    from ncl.llama import LlamaConfig, LlamaForCausalLM
    from ncl.tokenizers import HFTokenizer

    example = load_script("examples/augment_your_model.py")
    example.make_data(tmp_path / "train.jsonl", 40, seed=0)
    records = read_records(tmp_path / "train.jsonl")
    tok = example.make_tokenizer([r["prompt"] + " " + r["answer"] for r in records])
    base = tmp_path / "base"
    LlamaForCausalLM(LlamaConfig.preset("tiny", vocab_size=tok.vocab_size, num_hidden_layers=2)).save_pretrained(base)
    tok.tokenizer.save(str(base / "tokenizer.json"))
    write(base / "special_tokens_map.json", [json.dumps({"bos_token": "<bos>", "eos_token": "<eos>",
                                                         "pad_token": "<pad>"})])
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(tmp_path / "train.jsonl"), "--base", str(base), "--out", str(out),
                     "--steps", "2", "--batch-size", "4", "--train-max-steps", "16", "--split", "1"]) == 0
    model = AugmentedModel.from_pretrained(out)
    assert isinstance(model.tokenizer, HFTokenizer) and model.split == 1 and model.kind == "ncl"
    assert model.tokenizer.encode("largest 4 9 2 =") == tok.encode("largest 4 9 2 =")
    capsys.readouterr()
