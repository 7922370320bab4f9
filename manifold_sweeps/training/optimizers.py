"""SGD and AdamW over parameters stacked along a leading run dimension.

torch.optim keeps one learning rate per tensor; packed runs need one per run, and per-run state
resets (sequential curricula) and step counts. These implementations follow torch.optim.SGD
(dampening 0, no Nesterov) and torch.optim.AdamW update rules exactly; tests compare them against
torch.optim for a single run.
"""

from __future__ import annotations

import torch

from ..task.layout import _name


def _per_run(values, device) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(P,) -> (P, 1, ..., 1) to broadcast against a stacked parameter."""
    return t.view(-1, *([1] * (like.dim() - 1)))


class PackedOptimizer:
    def __init__(self, params: list[torch.nn.Parameter], optimizer_cfgs: list):
        names = {_name(c.name) for c in optimizer_cfgs}
        if len(names) != 1:
            raise ValueError(f"runs packed together must share optimizer.name, got {sorted(names)}")
        self.name = names.pop()
        self.params = [p for p in params if p.requires_grad]
        device = self.params[0].device
        self.lr = _per_run([c.lr for c in optimizer_cfgs], device)
        self.weight_decay = _per_run([c.weight_decay for c in optimizer_cfgs], device)
        self.momentum = _per_run([c.momentum for c in optimizer_cfgs], device)
        self.beta1 = _per_run([c.betas[0] for c in optimizer_cfgs], device)
        self.beta2 = _per_run([c.betas[1] for c in optimizer_cfgs], device)
        self.eps = _per_run([c.eps for c in optimizer_cfgs], device)
        n_runs = len(optimizer_cfgs)
        self.steps = torch.zeros(n_runs, dtype=torch.float32, device=device)  # per-run step counts
        self.state: list[dict[str, torch.Tensor]] = [self._fresh_state(p) for p in self.params]

    def _fresh_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.name == "sgd":
            return {"momentum_buffer": torch.zeros_like(p)}
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def reset_runs(self, runs: list[int]) -> None:
        """Forget the state of these runs, as a freshly built optimizer would have it."""
        for state in self.state:
            for buf in state.values():
                buf[runs] = 0
        self.steps[runs] = 0

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        if self.name == "sgd":
            self._sgd()
        else:
            self._adamw()

    def _sgd(self) -> None:
        lr = self.lr
        for p, state in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            g = g + _bcast(self.weight_decay, p) * p
            buf = state["momentum_buffer"]
            # torch.optim.SGD starts the buffer at g; momentum * 0 + g is the same thing.
            buf.mul_(_bcast(self.momentum, p)).add_(g)
            p.sub_(_bcast(lr, p) * buf)

    def _adamw(self) -> None:
        lr = self.lr
        bc1 = 1 - self.beta1**self.steps
        bc2_sqrt = (1 - self.beta2**self.steps).sqrt()
        for p, state in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            b1, b2 = _bcast(self.beta1, p), _bcast(self.beta2, p)
            p.mul_(1 - _bcast(lr * self.weight_decay, p))
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g * (1 - b2))
            denom = (v.sqrt() / _bcast(bc2_sqrt, p)).add_(_bcast(self.eps, p))
            p.sub_(_bcast(lr / bc1, p) * (m / denom))

    def run_state(self, p: int) -> dict:
        return {
            "steps": float(self.steps[p]),
            "buffers": [{k: v[p].detach().cpu().clone() for k, v in s.items()} for s in self.state],
        }

    def load_run_state(self, p: int, saved: dict) -> None:
        self.steps[p] = saved["steps"]
        for state, bufs in zip(self.state, saved["buffers"]):
            for k, v in bufs.items():
                state[k][p].copy_(v)


@torch.no_grad()
def clip_grad_norm_per_run(params: list[torch.Tensor], max_norms: torch.Tensor) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ applied to each run separately; returns the norms (P,)."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = sum(g.pow(2).flatten(1).sum(dim=1) for g in grads)
    norms = sq.sqrt()
    coef = (max_norms / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_bcast(coef, g))
    return norms
