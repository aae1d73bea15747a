"""Training for the algorithmic tasks: ``ncl train`` (single process, or DDP under ``torchrun``).

Layout of a run directory:

- ``checkpoint.pt``: model, optimizer, step, elapsed time and the full configuration; written atomically
  (a temporary file, then ``os.replace``), so a killed run leaves the previous checkpoint intact;
- ``metrics.jsonl``: one JSON object per logged step (``loss``, ``lm_loss``, ``aux_loss``, ``grad_norm``,
  ``machine_steps``, ``unhalted``, ``elapsed``) and a final ``{"event": "end", ...}`` line;
- ``config.json``: the configuration, for people.

Batches are drawn from a generator seeded by ``(seed, rank, step)``, not from a running RNG, so a resumed run
sees the same batches as an uninterrupted one and resumes bit-exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

from ncl import tasks as task_registry
from ncl.tokenizers import CharTokenizer

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
MODELS = ("augmented", "llama")
NUMBERS = ("auto", "learned", "tokens")


@dataclass
class TrainConfig:
    """Everything a run depends on (saved in the checkpoint; ``--resume`` keeps the saved one).

    ``preset`` names a :func:`ncl.llama.LlamaConfig.preset`; ``layers``/``hidden`` override its depth and
    width (0 keeps the preset's). ``aux`` weights the auxiliary supervision of the computer's heads (the
    program, arguments, tape gates and values, read gates: what the task knows the machine should receive);
    0 trains from the answer text alone. ``reader`` is :class:`ncl.nn.ComputerConfig`'s (``"digits"``: the
    heads classify digits and a fixed base-10 recurrence accumulates them; ``"mlp"``: one head per token maps
    the hidden state to a value).

    ``numbers`` says how the augmented model maps digit tokens to and from machine values: ``"learned"`` (heads
    learn which token is which digit, the decoder learns to spell readouts), ``"tokens"`` (the token ids say
    which digit a token is, every digit enters the LLaMA alike, answers copy the readout's digits:
    :class:`ncl.nn.ComputerConfig`'s ``digit_tokens``) or ``"auto"``: ``"tokens"`` exactly when the training
    data lacks some digit (no learned head can read or write a digit it never saw: fib's training examples,
    k <= 4, hold only the digits 0–4), else ``"learned"``. See :func:`resolve_numbers`.
    """

    task: str = "add"
    model: str = "augmented"
    preset: str = "tiny"
    layers: int = 4
    hidden: int = 0
    split: int = 2
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 20
    weight_decay: float = 0.0
    clip: float = 1.0
    aux: float = 1.0
    mode: str = "mixture"
    reader: str = "digits"
    writer: str = "digits"
    numbers: str = "auto"
    top_k: int = 2
    train_max_steps: int = 0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    time_limit: float = 840.0
    threads: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        task_registry.get(self.task)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}")
        from ncl.llama import preset_names
        from ncl.nn import MODES

        if self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(preset_names())}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.numbers not in NUMBERS:
            raise ValueError(f"unknown numbers {self.numbers!r}; choose one of: {', '.join(NUMBERS)}")
        if self.train_max_steps < 0:
            raise ValueError(f"train_max_steps must be >= 0 (0: automatic), got {self.train_max_steps}")
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.clip <= 0 or self.aux < 0 or self.time_limit <= 0:
            raise ValueError("lr, clip and time_limit must be > 0 and aux >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        # runs saved before these options read with the MLP head, wrote embeddings and learned every digit
        d = {"reader": "mlp", "writer": "embed", "numbers": "learned", **d}
        return cls(**{k: v for k, v in d.items() if k in known})


def tokenizer() -> CharTokenizer:
    return CharTokenizer()


def resolve_numbers(cfg: "TrainConfig", samples: int = 512) -> str:
    """``cfg.numbers``, with ``"auto"`` decided from the data: ``"tokens"`` when ``samples`` training examples
    (prompts and answers) do not hold all ten digits, else ``"learned"``."""
    if cfg.numbers != "auto":
        return cfg.numbers
    seen = set()
    for e in task_registry.get(cfg.task).generate("train", samples, seed=cfg.seed):
        seen.update(c for c in e.prompt + e.answer if c.isdigit())
    return "learned" if len(seen) == 10 else "tokens"


def build_model(cfg: TrainConfig):
    """The model of ``cfg``: :class:`~ncl.augmented.AugmentedLlama` or the :class:`~ncl.augmented.PlainLlama`
    baseline, same LLaMA size."""
    from ncl.augmented import AugmentedLlama, PlainLlama
    from ncl.llama import LlamaConfig
    from ncl.nn import ComputerConfig

    over = {"vocab_size": max(128, tokenizer().vocab_size)}
    if cfg.layers:
        over["num_hidden_layers"] = cfg.layers
    if cfg.hidden:
        base = LlamaConfig.preset(cfg.preset)
        over.update(hidden_size=cfg.hidden, intermediate_size=2 * cfg.hidden,
                    head_dim=cfg.hidden // base.num_attention_heads)
    lcfg = LlamaConfig.preset(cfg.preset, **over)
    if cfg.model == "llama":
        return PlainLlama(lcfg)
    digit_tokens = ()
    if resolve_numbers(cfg) == "tokens":
        if cfg.reader != "digits" or cfg.writer != "digits":
            raise ValueError("numbers='tokens' needs reader='digits' and writer='digits' (pass --numbers learned "
                             "to use other readers or writers)")
        digit_tokens = tuple(tokenizer().token_to_id(str(i)) for i in range(10))
    ccfg = ComputerConfig(mode=cfg.mode, top_k=cfg.top_k, reader=cfg.reader, writer=cfg.writer,
                          digit_tokens=digit_tokens,
                          max_steps=cfg.train_max_steps or auto_max_steps(task_registry.get(cfg.task)))
    return AugmentedLlama(lcfg, ccfg, split=min(cfg.split, lcfg.num_hidden_layers))


def auto_max_steps(task, samples: int = 64, split: str = "train") -> int:
    """The machine's step limit on ``split``: 1.25 times the most steps the right program takes on examples of
    the split (run on the VM, including the split's largest size), plus 10.

    In training (``split="train"``) it stops a wrong candidate early instead of letting it run for the eval
    limit (long runs cost time and can overflow fp32 gradients). :func:`ncl.evaluate.evaluate_split` uses it
    for the OOD splits whose right runs are longer than its fixed limit (fib at 4x: 33,523 steps for k = 16).
    """
    import ncl.library
    from ncl.nn import ComputerConfig

    mcfg = ComputerConfig().machine()
    fn = ncl.library.get(task.program, mcfg)
    low, high = task.size_range(split)
    examples = task.generate(split, samples, seed=99) + [task.make(random.Random(0), high)]
    worst = 0
    for e in examples:
        tape = list(e.tape) + [0] * (mcfg.cells - len(e.tape))
        if task.axis == "length":  # the worst case of a sort: a descending list
            tape[:len(e.tape)] = sorted(e.tape, reverse=True)
        # the VM's own default limit (1000) is below the deeper splits' runs; library programs always halt
        worst = max(worst, fn.program.execute(*e.args, mem=tape, backend="vm", max_steps=10**6).steps)
    return int(1.25 * worst) + 10


# --- batches ---------------------------------------------------------------------------------------------------
def _numbers_end(tokens: list[str]) -> list[int]:
    """Indices of prompt tokens that end a number: a space right after a digit."""
    return [i for i in range(1, len(tokens)) if tokens[i] == " " and tokens[i - 1].isdigit()]


def encode(examples, tok: CharTokenizer, program_names: list[str] | None = None, with_answer: bool = True):
    """Tensors for a batch: prompts left padded (so all end in column P), answers + EOS right padded.

    Returns a dict: ``input_ids, attention_mask, read_mask, labels`` (B,T) (``labels[:, t]`` is the token
    predicted at t, −100 where nothing is), and the auxiliary targets ``program (B,)``, ``args (B,A)``,
    ``gate (B,T)`` (−100 = no target), ``value (B,T)`` (−100 = none), ``read_gate (B,T)`` (−100 = none).
    """
    prompts = [[tok.bos_token_id] + tok.encode(e.prompt) for e in examples]
    answers = [tok.encode(e.answer) + [tok.eos_token_id] for e in examples] if with_answer else [[] for _ in examples]
    P = max(len(p) for p in prompts)
    A = max(len(a) for a in answers)
    B, T = len(examples), P + A
    ids = torch.full((B, T), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    gate = torch.full((B, T), -100, dtype=torch.long)
    value = torch.full((B, T), -100, dtype=torch.long)
    read_gate = torch.full((B, T), -100, dtype=torch.long)
    digit = torch.full((B, T), -100, dtype=torch.long)
    digit_gate = torch.full((B, T), -100, dtype=torch.long)
    read = torch.zeros(B, T, dtype=torch.long)
    read[:, P - 1:] = 1
    for i, (e, p, a) in enumerate(zip(examples, prompts, answers)):
        off = P - len(p)
        ids[i, off:P] = torch.tensor(p)
        mask[i, off:P + len(a)] = 1
        if a:
            ids[i, P:P + len(a)] = torch.tensor(a)
            labels[i, P - 1:P - 1 + len(a)] = torch.tensor(a)
        toks = [tok.id_to_token(t) for t in p]
        gate[i, off:P] = 0
        digit[i, off:P] = torch.tensor([int(s) if s.isdigit() else 10 for s in toks])  # 10: not a digit
        for j, k in enumerate(_numbers_end(toks)):
            gate[i, off + k] = 1
            value[i, off + k] = e.tape[j]
        # read gate: advance at each answer separator (the input token is a space), not before the first element
        seq = [tok.id_to_token(t) for t in p[-1:] + a[:-1]]
        for j, s in enumerate(seq):
            read_gate[i, P - 1 + j] = int(j > 0 and s == " ")
            digit_gate[i, P - 1 + j] = int(j > 0 and s.isdigit())
    out = {"input_ids": ids, "attention_mask": mask, "read_mask": read, "labels": labels, "gate": gate,
           "value": value, "read_gate": read_gate,
           "digit": digit, "digit_gate": digit_gate}
    if program_names is not None:
        out["program"] = torch.tensor([program_names.index(e.program) for e in examples])
    width = max(len(e.args) for e in examples)
    out["args"] = torch.tensor([list(e.args) + [-100] * (width - len(e.args)) for e in examples])
    return out


def batch_for_step(task, cfg: TrainConfig, step: int, rank: int):
    """The training examples of ``step`` on ``rank`` (independent of any running RNG state)."""
    rng = random.Random(f"train/{cfg.task}/{cfg.seed}/{rank}/{step}")
    return [task.sample("train", rng) for _ in range(cfg.batch_size)]


def aux_loss(comp, batch) -> torch.Tensor:
    """Cross-entropies of the computer's heads against what the task knows the machine should receive."""
    h = comp.heads
    loss = F.nll_loss(torch.log(h["pi"].clamp_min(1e-9)), batch["program"])
    # arguments: the mass on the sources that hold the right value (the value heads have their own loss below)
    args = batch["args"]
    A = min(args.shape[1], h["source_weights"].shape[1])
    match = h["source_values"][:, None, :] == args[:, :A, None]  # (B, A, S)
    p = (h["source_weights"][:, :A] * match).sum(-1)
    sel = match.any(-1) & (args[:, :A] >= 0)
    if bool(sel.any()):
        loss = loss - torch.log(p[sel].clamp_min(1e-9)).mean()
    P = h["gate_logit"].shape[1]
    gate = batch["gate"][:, :P]
    sel = gate >= 0
    loss = loss + F.binary_cross_entropy_with_logits(h["gate_logit"][sel], gate[sel].float())
    if h["value_logits"].shape[-1] == 11:  # the digit reader: which digit each prompt token is (10: none)
        loss = loss + F.cross_entropy(h["value_logits"].flatten(0, 1), batch["digit"][:, :P].flatten(),
                                      ignore_index=-100)
    else:
        loss = loss + F.cross_entropy(h["value_logits"].flatten(0, 1), batch["value"][:, :P].flatten(),
                                      ignore_index=-100)
    rg = batch["read_gate"]
    sel = rg >= 0
    loss = loss + F.binary_cross_entropy_with_logits(h["read_logit"][sel], rg[sel].float())
    if h.get("digit_gate_logit") is not None:
        dg = batch["digit_gate"]
        sel = dg >= 0
        loss = loss + F.binary_cross_entropy_with_logits(h["digit_gate_logit"][sel], dg[sel].float())
    return loss


# --- checkpoints -----------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, model, optimizer, step: int, elapsed: float, cfg: TrainConfig) -> None:
    """Write atomically: a temporary file in the same directory, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "elapsed": elapsed, "config": asdict(cfg)}, tmp)
    os.replace(tmp, path)


def load_checkpoint(run_dir) -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (expected {path})")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model(run_dir):
    """``(model, config, checkpoint)`` of a run directory, model in eval mode."""
    ckpt = load_checkpoint(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, ckpt


def _lr(cfg: TrainConfig, step: int) -> float:
    """Linear warmup, then cosine decay to 10% over ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


# --- the loop --------------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, out: str | os.PathLike, resume: bool = False, progress: bool = True) -> dict:
    """Train ``cfg`` into ``out``; returns the last logged metrics.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DDP (gloo on CPU, nccl on GPU); rank 0 writes the files.
    """
    out = Path(out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ddp = world > 1
    device = torch.device("cpu")
    if ddp:
        import torch.distributed as dist

        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint in {out}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = TrainConfig.from_dict(ckpt["config"])
        saved.steps, saved.time_limit = cfg.steps, cfg.time_limit  # a resumed run may be extended
        cfg = saved
    else:
        ckpt = None
        if ckpt_path.exists():
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or pick another --out")
    cfg.validate()
    if cfg.model == "augmented":
        cfg.numbers = resolve_numbers(cfg)  # saved resolved: the checkpoint's layout must not depend on "auto"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    task = task_registry.get(cfg.task)
    tok = tokenizer()
    model = build_model(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    step, elapsed = 0, 0.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed = ckpt["step"], ckpt["elapsed"]
    model.to(device)
    module = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, find_unused_parameters=True)
    names = module.computer.program_names if module.has_computer else None
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    bar = None
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.task}/{cfg.model}", dynamic_ncols=True)
    last = {}
    start_time = time.time() - elapsed
    model.train()
    while step < cfg.steps:
        if time.time() - start_time > cfg.time_limit:
            break
        for g in optimizer.param_groups:
            g["lr"] = _lr(cfg, step)
        batch = {k: v.to(device) for k, v in encode(batch_for_step(task, cfg, step, rank), tok, names).items()}
        res = model(batch["input_ids"], batch["attention_mask"], batch["read_mask"], labels=batch["labels"])
        lm = res["loss"]
        comp = res["computer"]
        aux = aux_loss(comp, batch) if (comp is not None and cfg.aux > 0) else lm.new_zeros(())
        loss = lm + cfg.aux * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # gradients through long machine runs are large (DESIGN §5): clip, and skip non-finite steps
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
        finite = torch.isfinite(norm)
        if ddp:  # every rank must take the same decision
            import torch.distributed as dist

            flag = finite.float().to(device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag > 0
        if bool(finite):
            optimizer.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if main and (step % cfg.log_every == 0 or step == cfg.steps):
            last = {"step": step, "loss": loss.item(), "lm_loss": lm.item(), "aux_loss": aux.item(),
                    "grad_norm": norm.item(), "skipped": not bool(finite), "lr": _lr(cfg, step - 1),
                    "elapsed": round(time.time() - start_time, 2)}
            if comp is not None:
                last.update(machine_steps=comp.steps.mean().item(), unhalted=comp.unhalted.mean().item(),
                            run_steps=comp.run_steps)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(last) + "\n")
        if main and step % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt_path, module, optimizer, step, time.time() - start_time, cfg)
    elapsed = time.time() - start_time
    if main:
        save_checkpoint(ckpt_path, module, optimizer, step, elapsed, cfg)
        with open(out / METRICS, "a") as f:
            f.write(json.dumps({"event": "end", "step": step, "elapsed": round(elapsed, 2),
                                "stopped_by_time_limit": step < cfg.steps}) + "\n")
    if bar is not None:
        bar.close()
    if ddp:
        import torch.distributed as dist

        dist.barrier()
    return last


__all__ = ["TrainConfig", "train", "build_model", "encode", "load_model", "load_checkpoint", "save_checkpoint",
           "aux_loss", "auto_max_steps", "resolve_numbers", "MODELS", "NUMBERS"]
