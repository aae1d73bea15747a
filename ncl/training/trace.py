"""``ncl trace RUN PROMPT``: what a trained augmented model ran on one prompt: each call's program, its arguments
(the prompt's operands or an earlier call's result), its result and its machine steps, and the answer it wrote;
printed or as JSON; :func:`ncl.training.plots.plot_trace` draws it."""

from __future__ import annotations

import torch

from ncl import tasks as task_registry
from ncl.library.symbols import text
from ncl.tasks.base import as_asked
from ncl.training.checkpoints import load_model
from ncl.training.data import tokenizer
from ncl.training.evaluation import answer_budget, asked, decode_answers, decoding
from ncl.training.factory import budget_length, machine_budget, segment_length


@torch.no_grad()
def trace(run_dir, prompt: str, decode: str = "heads") -> dict:
    """The calls an augmented run's model makes on ``prompt``: ``{"prompt", "answer", "operands": [text],
    "calls": [{"program", "args": [{"source", "value"}], "result", "steps", "halts"}]}``. A model with one call per
    prompt (``ComputerConfig.calls == 0``) gives that call, on the whole tape (``source`` ``"tape"``). ``decode``:
    how a chain's calls are chosen (:data:`~ncl.training.evaluation.DECODES`). A chain's prompt gets the answer
    cue if it lacks it (:func:`~ncl.tasks.base.as_asked`): its task's prompts all end with it."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    model, cfg, _ = load_model(run_dir, length=segment_length(as_asked(prompt)))
    if cfg.model != "augmented":
        raise ValueError(f"ncl trace needs an augmented model's run; {run_dir} holds a {cfg.model!r} one")
    decoding(model, decode)
    task = task_registry.get(cfg.task)
    prompt = asked(task, prompt)
    tok = tokenizer()
    ids, mask = tok.encode_batch([prompt], add_bos=True, padding_side="left")
    limit = machine_budget(budget_length(task, segment_length(prompt)), task.n)[1]
    tokens, comp = model.generate(ids, mask, answer_budget(ids.shape[1]), tok.eos_token_id, max_steps=limit)
    answer = decode_answers(tok, tokens)[0]
    names, heads = model.computer.program_names, comp.heads.prompt
    chain = heads.chain
    if chain is None:
        call = {"program": names[int(heads.pi[0].argmax())], "args": [{"source": "tape", "value": None}],
                "result": text(comp.state.mem[0].argmax(-1).tolist()), "steps": float(comp.steps[0]), "halts": True}
        return {"prompt": prompt, "answer": answer, "operands": [], "calls": [call]}
    K = chain.pi.shape[1]
    segs = [text(chain.segments[0, s, :int(chain.segment_length[0, s])].tolist()).strip()
            for s in range(chain.segments.shape[1])]
    O = len(segs) - 1 - K
    count = int((chain.segment_length[0, 1:1 + O] > 0).sum())

    def source(s: int) -> str:
        return f"operand {s}" if s <= O else f"call {s - O}"

    calls = []
    for k in range(int(chain.calls[0])):
        args = [{"source": source(s), "value": segs[s]} for s in chain.args[0, k].tolist() if s > 0]
        calls.append({"program": names[int(chain.program[0, k])], "args": args, "result": segs[1 + O + k],
                      "steps": round(float(chain.call_steps[0, k]), 1), "halts": k == int(chain.calls[0]) - 1})
    return {"prompt": prompt, "answer": answer, "operands": segs[1:1 + count], "calls": calls}


def format_trace(result: dict) -> str:
    """:func:`trace`'s result as lines of text."""
    lines = [f"prompt:   {result['prompt']}"]
    if result["operands"]:
        lines.append("operands: " + ", ".join(f"{i} = {v}" for i, v in enumerate(result["operands"], 1)))
    for k, c in enumerate(result["calls"], 1):
        args = ", ".join(a["source"] if a["value"] is None else f"{a['value']} ({a['source']})" for a in c["args"])
        lines.append(f"call {k}:   {c['program']}({args}) -> {c['result']}   [{c['steps']:g} steps]"
                     + ("   halts" if c["halts"] else ""))
    lines.append(f"answer:   {result['answer']}")
    return "\n".join(lines)


__all__ = ["format_trace", "trace"]
