"""The tool-use baseline with scarce labels (``ncl train --model tooluse --labels F``): REINFORCE on the answer.

A tool call gives no gradient, so the examples without a labelled call train the baseline by the score-function
estimator. For each such example the model samples a call (each token drawn from its softmax), the discrete VM
runs it (:func:`~ncl.training.tooluse.run_calls`), and the reward is 1 when the printed answer is the example's
answer, else 0. The loss is

    L_rl = −(1/U) Σ_u (r_u − b_u) · log p(call_u | prompt_u),

summed over the call's tokens and its ``<eos>``, with ``b_u`` the mean reward of the batch's other unlabelled
examples (leave-one-out, so a row's own reward does not enter its baseline; 0 when it is the only one). The
labelled examples keep the supervised loss on their call text, as at ``--labels 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ncl.llama.generation import greedy_generate
from ncl.training.evaluation import answer_budget
from ncl.training.tooluse import run_calls


@dataclass
class Samples:
    """Calls sampled for some prompts: ``text`` as written (up to ``<eos>``), ``reward`` (U,) 1.0 where the VM
    printed the answer, and ``input_ids``/``attention_mask``/``labels`` (U, T): the prompts left padded with the
    sampled tokens after them, ``labels`` the sampled tokens (``<eos>`` included) at the positions that predict
    them, −100 elsewhere."""

    text: list[str]
    reward: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def sample_calls(model, tok, prompts: list[str], answers: list[str], generator: torch.Generator) -> Samples:
    """Draw one call per prompt from ``model`` (a :class:`~ncl.augmented.PlainLlama`), run each on the VM and
    score it against ``answers``. No prompts (a batch whose every example is labelled): no samples."""
    if not prompts:
        empty = torch.zeros(0, 0, dtype=torch.long)
        return Samples([], torch.zeros(0), empty, empty, empty)
    ids, mask = tok.encode_batch(prompts, add_bos=True, padding_side="left")
    was_training = model.training
    model.eval()
    out = greedy_generate(model.llama, ids, answer_budget(ids.shape[1]), attention_mask=mask,
                          eos_token_id=tok.eos_token_id, generator=generator)
    model.train(was_training)
    P, U = ids.shape[1], len(prompts)
    new = out[:, P:]
    texts, lengths = [], []
    for row in new.tolist():
        end = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        lengths.append(end)
        texts.append(tok.decode([t if t < tok.vocab_size else tok.unk_token_id for t in row[:end]
                                 if t != tok.eos_token_id]))
    reward = torch.tensor([float(run_calls(t) == a) for t, a in zip(texts, answers)])
    T = P + max(lengths, default=0)
    input_ids = torch.full((U, T), tok.pad_token_id, dtype=torch.long)
    attention = torch.zeros(U, T, dtype=torch.long)
    labels = torch.full((U, T), -100, dtype=torch.long)
    input_ids[:, :P], attention[:, :P] = ids, mask
    for i, n in enumerate(lengths):
        input_ids[i, P:P + n] = new[i, :n]
        attention[i, P:P + n] = 1
        labels[i, P - 1:P - 1 + n] = new[i, :n]  # the position before each token predicts it
    return Samples(texts, reward, input_ids, attention, labels)


def leave_one_out(reward: torch.Tensor) -> torch.Tensor:
    """Each entry's baseline: the mean of the other entries of ``reward (U,)`` (0 where U = 1)."""
    U = reward.shape[0]
    if U < 2:
        return torch.zeros_like(reward)
    return (reward.sum() - reward) / (U - 1)


def reinforce_loss(model, samples: Samples) -> torch.Tensor:
    """``L_rl`` (module docstring) of the sampled calls under ``model``'s current weights; 0 without samples."""
    if samples.input_ids.shape[0] == 0:
        return torch.zeros(())
    logits = model.llama(samples.input_ids, attention_mask=samples.attention_mask).logits  # (U, T, V)
    logp = -F.cross_entropy(logits.flatten(0, 1).float(), samples.labels.flatten(), ignore_index=-100,
                            reduction="none").view(samples.labels.shape).sum(1)  # (U,)
    advantage = samples.reward - leave_one_out(samples.reward)
    return -(advantage.to(logp.dtype) * logp).mean()


__all__ = ["Samples", "leave_one_out", "reinforce_loss", "sample_calls"]
