"""Replaying labelled examples (ncl train --replay R, ncl.training.labels.Replay): every replayed example is one
the seed labelled and the stream held before the step, the draw is fixed by (seed, rank, step), a resumed run
collects what the uninterrupted one had, and a run's batches grow by R."""

import json

import pytest

from ncl import cli, tasks
from ncl.training import TrainConfig
from ncl.training.data import batch_for_step
from ncl.training.labels import Replay, label_draw, replay_draw


def config(**kw):
    return TrainConfig(task="mix", labels=0.1, replay=3, batch_size=8, **kw)


def test_replayed_examples_are_labelled_ones_seen_before():
    cfg, task = config(), tasks.get("mix")
    replay = Replay(task, cfg, rank=0)
    earlier = set()
    for step in range(12):
        stream = batch_for_step(task, cfg, step, 0)
        batch = replay.batch(stream, step)
        assert batch[:len(stream)] == stream
        extra = batch[len(stream):]
        assert len(extra) == (cfg.replay if earlier else 0)
        for e in extra:
            assert e.prompt in earlier and label_draw(e.prompt, cfg.seed) < cfg.labels
        earlier |= {e.prompt for e in stream if label_draw(e.prompt, cfg.seed) < cfg.labels}
    assert earlier, "no labelled example in 12 steps at F = 0.1"


def test_a_resumed_run_replays_what_the_uninterrupted_one_did():
    cfg, task = config(), tasks.get("mix")
    whole = Replay(task, cfg, rank=0)
    for step in range(9):
        whole.batch(batch_for_step(task, cfg, step, 0), step)
    resumed = Replay(task, cfg, rank=0, step=9)
    assert [e.prompt for e in resumed.seen] == [e.prompt for e in whole.seen]
    stream = batch_for_step(task, cfg, 9, 0)
    assert [e.prompt for e in resumed.batch(stream, 9)] == [e.prompt for e in whole.batch(stream, 9)]


def test_the_draw():
    seen = list(range(50))
    assert replay_draw(seen, 0, 0, 5, 4) == replay_draw(seen, 0, 0, 5, 4)
    assert replay_draw(seen, 0, 0, 5, 4) != replay_draw(seen, 0, 0, 6, 4)
    assert replay_draw([], 0, 0, 5, 4) == [] and replay_draw(seen, 0, 0, 5, 0) == []


@pytest.mark.parametrize("bad", [dict(labels=1.0), dict(labels=0.0), dict(replay=-1)])
def test_options(bad):
    with pytest.raises(ValueError, match="replay"):
        TrainConfig(**{**dict(task="sort", labels=0.1, replay=2), **bad}).validate()


def test_a_run_with_replay(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "sort", "--out", str(out), "--layers", "1", "--batch-size", "2",
                     "--threads", "1", "--quiet", "--steps", "2", "--labels", "0.5", "--replay", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["replay"] == 2
