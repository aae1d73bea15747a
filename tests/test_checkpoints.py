"""Checkpoints without pickle (ncl.training.checkpoints): round trip, damaged files named in the error, the crash
layout (latest.json, checkpoint-<step>/), old pickle run directories refused with a pointer to ``ncl convert``,
the conversion, and loading that never unpickles. The durable writes of ncl.storage."""

import json
import pickle
import shutil
import warnings
from argparse import Namespace

import pytest
import torch

from ncl import cli, storage
from ncl.training import (LATEST, LEGACY_CHECKPOINT, CheckpointError, LegacyCheckpointError, TrainConfig,
                          build_model, checkpoint_dirs, convert_run_dir, load_checkpoint, load_model, save_checkpoint)

CFG = TrainConfig(task="sort", layers=2, split=1, batch_size=4, numbers="learned", train_max_steps=20, threads=1)


@pytest.fixture(scope="module")
def trained():
    """A model and an AdamW with state (two steps taken), and the RNG state after them."""
    torch.manual_seed(0)
    model = build_model(CFG)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        sum(p.float().square().sum() for p in model.parameters() if p.requires_grad).backward()
        opt.step()
    torch.rand(3)  # move the RNG away from the seed's state
    return model, opt


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, dict):
            _assert_same(v, b[k])
        elif torch.is_tensor(v):
            assert v.dtype == b[k].dtype and torch.equal(v.cpu(), b[k]), k
        else:
            assert v == b[k], k


def _old_format(run_dir, model, opt, step=5, elapsed=1.5):
    """A run directory as older versions wrote it: torch.save of one dict."""
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "elapsed": elapsed,
                "config": CFG.to_dict()}, run_dir / LEGACY_CHECKPOINT)


def test_round_trip(trained, tmp_path):
    model, opt = trained
    rng = torch.get_rng_state()
    path = save_checkpoint(tmp_path, model, opt, 7, 2.5, CFG, metrics={"step": 7, "loss": 1.25}, metrics_bytes=99)
    assert path == tmp_path / "checkpoint-00000007"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000007", LATEST]
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.json", "model.safetensors", "train_state.safetensors"]
    ckpt = load_checkpoint(tmp_path)
    _assert_same(ckpt["model"], model.state_dict())
    # the optimizer state dict reads back exactly (JSON has lists where torch had tuples)
    sd = opt.state_dict()
    _assert_same(ckpt["optimizer"]["state"], sd["state"])
    assert json.loads(json.dumps(sd["param_groups"])) == ckpt["optimizer"]["param_groups"]
    assert torch.equal(ckpt["rng"]["torch"], rng)
    assert (ckpt["step"], ckpt["elapsed"], ckpt["metrics_bytes"]) == (7, 2.5, 99)
    assert ckpt["metrics"] == {"step": 7, "loss": 1.25}
    assert TrainConfig.from_dict(ckpt["config"]) == CFG
    # the state loads into fresh objects and saves again identically
    model2 = build_model(CFG)
    model2.load_state_dict(ckpt["model"])
    opt2 = torch.optim.AdamW([p for p in model2.parameters() if p.requires_grad], lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    _assert_same(opt2.state_dict()["state"], sd["state"])
    loaded, cfg, _ = load_model(tmp_path)
    assert cfg == CFG and not loaded.training
    # a checkpoint directory loads on its own too
    _assert_same(load_checkpoint(path)["model"], ckpt["model"])


def test_new_checkpoint_replaces_old_and_same_step_gets_a_new_dir(trained, tmp_path):
    model, opt = trained
    save_checkpoint(tmp_path, model, opt, 1, 0.0, CFG)
    save_checkpoint(tmp_path, model, opt, 2, 0.0, CFG)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-00000002"]
    # a second save at the current step cannot replace the directory latest.json names: it gets a new one
    save_checkpoint(tmp_path, model, opt, 2, 1.0, CFG)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-00000002-1"]
    assert load_checkpoint(tmp_path)["elapsed"] == 1.0
    # leftovers of crashed writes go at the next save: a temporary directory, a pointer's temporary file, and a
    # complete directory the pointer never named (the crash came before the pointer moved), even at the new step
    (tmp_path / "checkpoint-00000003.tmp-1-abc").mkdir()
    (tmp_path / f"{LATEST}.tmp-1-abc").write_text("{")
    shutil.copytree(tmp_path / "checkpoint-00000002-1", tmp_path / "checkpoint-00000004")
    save_checkpoint(tmp_path, model, opt, 4, 3.0, CFG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000004", LATEST]
    assert load_checkpoint(tmp_path)["elapsed"] == 3.0


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "garbage_json", "pointer"])
def test_damaged_files_are_named(trained, tmp_path, damage):
    model, opt = trained
    path = save_checkpoint(tmp_path, model, opt, 3, 0.0, CFG)
    target = {"truncate": path / "model.safetensors", "flip": path / "train_state.safetensors",
              "delete": path / "model.safetensors", "garbage_json": path / "checkpoint.json",
              "pointer": tmp_path / LATEST}[damage]
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[:len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_bytes(data[:len(data) // 3])
    with pytest.raises(CheckpointError, match=str(target).replace("\\", "\\\\")) as info:
        load_checkpoint(tmp_path)
    assert {"truncate": "truncated", "flip": "SHA-256", "delete": "missing", "garbage_json": "damaged",
            "pointer": "not valid JSON"}[damage] in str(info.value)


def test_a_checkpoint_json_edited_after_writing_is_caught(trained, tmp_path):
    model, opt = trained
    path = save_checkpoint(tmp_path, model, opt, 3, 0.0, CFG)
    meta = path / "checkpoint.json"
    meta.write_text(meta.read_text().replace('"step": 3', '"step": 4'))
    with pytest.raises(CheckpointError, match="checkpoint.json is damaged: its SHA-256"):
        load_checkpoint(tmp_path)


def test_loading_never_unpickles(trained, tmp_path, monkeypatch):
    model, opt = trained
    save_checkpoint(tmp_path, model, opt, 3, 0.0, CFG)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 3
    load_model(tmp_path)


def test_old_pickle_run_is_refused_with_the_command_to_convert(trained, tmp_path, capsys):
    model, opt = trained
    _old_format(tmp_path, model, opt)
    with pytest.raises(LegacyCheckpointError, match=r"old pickle format.*ncl convert"):
        load_checkpoint(tmp_path)
    assert cli.main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "old pickle format" in err and f"ncl convert {tmp_path}" in err
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path), "--resume", "--quiet"]) == 2
    assert "ncl convert" in capsys.readouterr().err
    # and a fresh run does not overwrite it
    assert cli.main(["train", "--task", "sort", "--out", str(tmp_path), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_convert_then_load(trained, tmp_path, capsys):
    model, opt = trained
    _old_format(tmp_path, model, opt, step=5, elapsed=1.5)
    assert cli.main(["convert", str(tmp_path)]) == 0
    assert "converted" in capsys.readouterr().out
    assert (tmp_path / LEGACY_CHECKPOINT).exists()  # left in place, no longer read
    ckpt = load_checkpoint(tmp_path)
    assert (ckpt["step"], ckpt["elapsed"], ckpt["rng"]["torch"], ckpt["metrics_bytes"]) == (5, 1.5, None, None)
    _assert_same(ckpt["model"], model.state_dict())
    _assert_same(ckpt["optimizer"]["state"], opt.state_dict()["state"])
    loaded, cfg, _ = load_model(tmp_path)
    assert cfg == CFG
    assert cli.main(["convert", str(tmp_path)]) == 2  # once is enough
    assert "nothing to convert" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "nope")]) == 2
    assert f"no {LEGACY_CHECKPOINT}" in capsys.readouterr().err


def test_convert_refuses_full_unpickling_unless_asked(trained, tmp_path, capsys):
    """A file torch's restricted unpickler refuses (here: it holds an argparse.Namespace) converts only with
    --unsafe-pickle, and with a warning."""
    model, opt = trained
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 5, "elapsed": 1.5,
                "config": CFG.to_dict(), "args": Namespace(task="sort")}, tmp_path / LEGACY_CHECKPOINT)
    assert cli.main(["convert", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "--unsafe-pickle" in err
    assert not (tmp_path / LATEST).exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert convert_run_dir(tmp_path, unsafe_pickle=True) == tmp_path / "checkpoint-00000005"
    assert any("weights_only=False" in str(w.message) for w in caught)
    _assert_same(load_checkpoint(tmp_path)["model"], model.state_dict())


def test_storage_writes_atomically(tmp_path):
    target = tmp_path / "f.json"
    storage.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with storage.atomic_file(target, "w") as f:
            f.write('{"a": 2')
            raise Boom
    assert json.loads(target.read_text()) == {"a": 1}  # untouched, and no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    storage.write_bytes(target, b"xyz")
    assert target.read_bytes() == b"xyz"
