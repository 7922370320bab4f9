"""Cost of the SAE probe stage on one run of the `paper` preset, as `python -m manifold_sweeps.probes`
runs it: 3 checkpoints (10%, 40%, 100% of 20k steps), each an SAE of 8 x 128 = 1024 latents trained
for probe.sae_steps on 256 sequences per m (m = 1..4, T = 32, every position), then correlations and
the ablations on the run's 512 held-out sequences per m (9 latent groups, 5 random trials each).

The weights are random (a fresh initialisation per checkpoint): the cost depends on shapes, not on
what the model learned. Wall and CPU time include the process start; peak memory is the child
process's maximum resident set size. quick=True runs the `smoke` preset instead (seconds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..model.transformer import ModelShape, Transformer
from ..rundir.model_checkpoints import planned_checkpoint_steps, save_model_checkpoint
from ..rundir.status import StatusWriter
from .runs import compose_config


def _fake_run(run_dir: Path, cfg) -> int:
    """A completed run directory holding only what the probe stage reads; returns its checkpoint count."""
    shape = ModelShape.from_config(cfg)
    steps = planned_checkpoint_steps(cfg.probe, int(cfg.train.steps))
    for i, step in enumerate(steps):
        model = Transformer(shape, n_runs=1)
        model.init_run_(0, i)
        save_model_checkpoint(run_dir, step, model.run_state(0), shape, cfg)
    StatusWriter(run_dir).update(state="completed", last_step=int(cfg.train.steps))
    return len(steps)


def run(quick: bool = False) -> dict:
    preset = "smoke" if quick else "paper"
    cfg = compose_config(f"experiment={preset}", "probe.device=cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-probes-"))
    try:
        n_checkpoints = _fake_run(tmp / "run", cfg)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "manifold_sweeps.probes", str(tmp / "run")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory, not every child's
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, or it warns
        if proc.returncode != 0:
            raise RuntimeError(f"the probe stage failed (exit {proc.returncode}):\n{out}")
        if not (tmp / "run" / "probes" / "sae_probes.parquet").exists():
            raise RuntimeError(f"the probe stage wrote no table:\n{out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p = cfg.probe
    return {
        f"probes_{preset}_run_wall_s": round(wall, 2),
        f"probes_{preset}_per_checkpoint_wall_s": round(wall / n_checkpoints, 2),
        # CPU time (user + system) is less sensitive than wall time to other work on a shared machine.
        f"probes_{preset}_run_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        f"probes_{preset}_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        f"probes_{preset}_checkpoints": n_checkpoints,
        f"probes_{preset}_sae": f"{int(p.sae_width_ratio) * int(cfg.model.d_model)} latents x {int(p.sae_steps)} steps "
                                f"x batch {int(p.sae_batch_size)}",
        "probes_torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
