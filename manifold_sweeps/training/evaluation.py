"""Fixed held-out evaluation sets and the metrics computed on them.

Each run draws its evaluation set once, per m, from its own `eval/m=<m>` stream on the CPU: it is
independent of the training stream, identical on every device, and unchanged when other m are
added. Training batches are fresh random draws, so an exact repeat of an evaluation sequence is
possible but astronomically rare (T positions of ~200 distractor tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.transformer import Transformer, readout_entropy
from ..task.generator import sample_batch
from ..task.layout import TokenLayout
from ..seeding import generator

EVAL_CHUNK = 256  # examples per forward pass; bounds memory for large packs


def build_eval_set(
    layout: TokenLayout, ms: list[int], n_examples: int, seed: int, batch_size: int, per_batch_positions: bool, device,
    stream: str = "eval",
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{m: (tokens (n, T), labels (n,))}. With per_batch positions, chunks of batch_size share a placement.

    Each m draws from the stream `<stream>/m=<m>` (other streams give other fixed sets, e.g. probes').
    """
    out = {}
    for m in ms:
        gen = generator(seed, f"{stream}/m={m}")
        chunk = batch_size if per_batch_positions else n_examples
        tokens, labels = [], []
        for start in range(0, n_examples, chunk):
            b = sample_batch(layout, m, min(chunk, n_examples - start), gen, per_batch_positions)
            tokens.append(b.tokens)
            labels.append(b.labels)
        out[m] = (torch.cat(tokens).to(device), torch.cat(labels).to(device))
    return out


@torch.no_grad()
def evaluate(model: Transformer, eval_sets: list[dict[int, tuple[torch.Tensor, torch.Tensor]]]) -> list[list[dict]]:
    """Metrics of every run on each of its own m. eval_sets[p] is run p's set.

    Returns, per run, a list of {"m", "eval_loss", "eval_accuracy", "attention_entropy": [per layer]}.
    Runs with fewer m than others repeat their last m in the shared forward pass; those repeats
    are not reported.
    """
    P = len(eval_sets)
    ms_per_run = [sorted(s) for s in eval_sets]
    results: list[list[dict]] = [[] for _ in range(P)]
    for i in range(max(len(ms) for ms in ms_per_run)):
        ms = [ms_run[min(i, len(ms_run) - 1)] for ms_run in ms_per_run]
        tokens = torch.stack([eval_sets[p][m][0] for p, m in enumerate(ms)])  # (P, n, T)
        labels = torch.stack([eval_sets[p][m][1] for p, m in enumerate(ms)])  # (P, n)
        n = tokens.shape[1]
        loss_sum = torch.zeros(P, device=tokens.device)
        correct = torch.zeros(P, device=tokens.device)
        entropy_sum = None
        for start in range(0, n, EVAL_CHUNK):
            tk, lb = tokens[:, start : start + EVAL_CHUNK], labels[:, start : start + EVAL_CHUNK]
            logits, attns = model(tk, readout_attention=True)  # (P, b, C), L x (P, b, H, T)
            ce = F.cross_entropy(logits.flatten(0, 1), lb.flatten(), reduction="none").view(lb.shape)
            loss_sum += ce.sum(dim=1)
            correct += (logits.argmax(dim=-1) == lb).float().sum(dim=1)
            ent = torch.stack([readout_entropy(a).mean(dim=2).sum(dim=1) for a in attns], dim=1)  # (P, L)
            entropy_sum = ent if entropy_sum is None else entropy_sum + ent
        loss, acc, ent = (loss_sum / n).tolist(), (correct / n).tolist(), (entropy_sum / n).tolist()
        for p, m in enumerate(ms):
            if i < len(ms_per_run[p]):
                results[p].append({"m": m, "eval_loss": loss[p], "eval_accuracy": acc[p], "attention_entropy": ent[p]})
    return results
