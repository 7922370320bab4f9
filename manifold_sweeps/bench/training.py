"""Benchmark: training throughput of the presets, against the textbook implementation and the roofline.

For each of the `paper` and `reference_code` presets, three candidates are timed in turn, round
after round, on this machine's default device: one run trained by the real loop (`train_pack` with
one run) and the same with `train.compile=true`, in this process, and the same model and data
trained the textbook way (`textbook.py`) in a child process of its own, started afresh every round:
our loop sets the process's malloc options (training/allocator.py), which a textbook implementation
would not have and which cannot be undone in the process that set them. Every window skips the
first steps (warm-up; for the compiled run, the compilation) and covers only training steps: ours
includes the snapshots at the preset's interval, which the textbook loop does not take. A fourth,
timed in the same rounds, is not a training run: the kernels that carry the step's FLOPs, replayed
alone (`kernels.py`), which bound what any arrangement of those kernels could reach.

Figures, per preset:
- <preset>_steps_per_s, <preset>_compiled_steps_per_s, <preset>_textbook_steps_per_s: medians;
- <preset>_speedup_vs_textbook, <preset>_compiled_speedup_vs_textbook: medians of the
  round-by-round ratios;
- <preset>_textbook_page_faults_per_step: minor page faults per timed textbook step (median): with
  the C library's default malloc usually hundreds, though glibc's adaptive thresholds bring it near
  0 in some windows (ours: none in steady state). The child also reports that our malloc options
  were not applied in it, and the benchmark fails if they were;
- <preset>_compile_s: the compiled run's first step interval in the first round (compilation, or
  loading it from PyTorch's on-disk cache) less the eager run's in the same round (both hold step 0's
  snapshot, evaluation and commutator measurement);
- <preset>_gflop_per_step: FLOPs executed per step (bench/flops.py; readout-only last layer), and
  <preset>_textbook_gflop_per_step: what the textbook executes (every position of every layer);
- <preset>_roofline_fraction (and _compiled_, _textbook_): steps/s x FLOPs per step / the matmul
  peak, as the median of the round-by-round fractions: the peak (at the size that reached it) is
  measured again in every round, as <preset>_matmul_peak_gflops (median), since a peak taken
  minutes apart moves with the machine's load;
- <preset>_flop_kernels_steps_per_s: the step's FLOP-carrying kernels alone (bench/kernels.py), replayed
  in the same rounds; _flop_kernels_gflops and _flop_kernels_roofline_fraction: the rate they reach,
  the ceiling of the roofline fraction with these kernels; _flop_kernels_share: median of the
  round-by-round ours / kernels, the share of our step's time those kernels take.
And matmul_peak_gflops (bench/timing.py) with the matrix size that reached it, measured first over
several sizes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from ..model.transformer import ModelShape
from ..training import allocator
from . import kernels, textbook
from .flops import training_step_flops
from .runs import bench_device, pack_configs, train_timed
from .timing import StepClock, interleaved, matmul_peak_gflops, median, median_ratio

PRESETS = ("paper", "reference_code")
# Steps per timed run: a few seconds each on a 2-core CPU.
FULL = dict(steps={"paper": 300, "reference_code": 150}, warmup=10, rounds=5, replay_s=2.0)
QUICK = dict(steps={"paper": 6, "reference_code": 6}, warmup=2, rounds=1, replay_s=0.05)


def run(quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    warmup = plan["warmup"]
    device = str(bench_device(PRESETS[0]))
    print(f"  measuring the matmul peak ({device})", flush=True)
    peak, peak_n = matmul_peak_gflops(quick, device)
    figures: dict = {"matmul_peak_gflops": round(peak, 1), "matmul_peak_size": peak_n}
    for preset in PRESETS:
        steps = plan["steps"][preset]
        cfg = pack_configs(preset, [0], steps)[0]
        compiled_cfg = pack_configs(preset, [0], steps, "train.compile=true")[0]
        first_steps = {"ours": [], "compiled": []}

        def timed(name, run_cfg):
            def rate():
                clock = train_timed([run_cfg])
                # The first interval holds step 0's snapshot, evaluation and commutator measurement,
                # and for the compiled run its compilation: the difference is the compilation.
                first_steps[name].append(clock.times[1] - clock.times[0])
                return clock.steps_per_s(warmup)
            return rate

        textbook_faults = []

        def baseline():
            result = textbook_in_child(preset, steps, warmup, device)
            textbook_faults.append(result["page_faults_per_step"])
            return result["steps_per_s"]

        step_kernels = kernels.record_step(cfg, device)
        rates = interleaved({"ours": timed("ours", cfg), "compiled": timed("compiled", compiled_cfg),
                             "textbook": baseline,
                             "kernels": lambda: kernels.replays_per_s(step_kernels, plan["replay_s"], device),
                             # The peak again in every round, at the size that reached it: a roofline
                             # fraction pairs a rate with the peak of its own round.
                             "peak": lambda: matmul_peak_gflops(quick, device, sizes=(peak_n,))[0]},
                            plan["rounds"], f"{preset} ")
        shape = ModelShape.from_config(cfg)
        flops = training_step_flops(shape, int(cfg.train.batch_size))
        flops_textbook = training_step_flops(shape, int(cfg.train.batch_size), packed=False)
        ours, fast, base = median(rates["ours"]), median(rates["compiled"]), median(rates["textbook"])
        ceiling = median(rates["kernels"])

        def roofline(name, step_flops):
            return round(median_ratio(rates[name], rates["peak"]) * step_flops / 1e9, 3)

        figures.update({
            f"{preset}_steps_per_s": round(ours, 2),
            f"{preset}_compiled_steps_per_s": round(fast, 2),
            f"{preset}_textbook_steps_per_s": round(base, 2),
            f"{preset}_speedup_vs_textbook": round(median_ratio(rates["ours"], rates["textbook"]), 3),
            f"{preset}_compiled_speedup_vs_textbook": round(median_ratio(rates["compiled"], rates["textbook"]), 3),
            f"{preset}_textbook_page_faults_per_step": round(median(textbook_faults), 1),
            f"{preset}_compile_s": round(first_steps["compiled"][0] - first_steps["ours"][0], 1),
            f"{preset}_matmul_peak_gflops": round(median(rates["peak"]), 1),
            f"{preset}_gflop_per_step": round(flops / 1e9, 4),
            f"{preset}_textbook_gflop_per_step": round(flops_textbook / 1e9, 4),
            f"{preset}_roofline_fraction": roofline("ours", flops),
            f"{preset}_compiled_roofline_fraction": roofline("compiled", flops),
            f"{preset}_textbook_roofline_fraction": roofline("textbook", flops_textbook),
            f"{preset}_flop_kernels_steps_per_s": round(ceiling, 2),
            f"{preset}_flop_kernels_gflops": round(ceiling * flops / 1e9, 1),
            f"{preset}_flop_kernels_roofline_fraction": roofline("kernels", flops),
            f"{preset}_flop_kernels_share": round(median_ratio(rates["ours"], rates["kernels"]), 3),
        })
    figures["device"] = device
    return figures


def textbook_in_child(preset: str, steps: int, warmup: int, device: str) -> dict:
    """The textbook loop trained in a fresh `python -m manifold_sweeps.bench.training --textbook`
    process with this one's threads: {"steps_per_s", "page_faults_per_step"} after `warmup` steps,
    and "malloc_tuned", whether our malloc options were applied in it (never: it raises then)."""
    command = [sys.executable, "-m", __name__, "--textbook", preset, "--steps", str(steps), "--warmup", str(warmup),
               "--device", device, "--threads", str(torch.get_num_threads())]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"textbook child {command} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["malloc_tuned"]:
        raise RuntimeError("the textbook baseline ran with our malloc options (training/allocator.py)")
    return result


def _textbook_child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m manifold_sweeps.bench.training")
    parser.add_argument("--textbook", required=True, choices=PRESETS, help="the preset to train the textbook way")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True, help="steps left out of the rate")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, required=True, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = pack_configs(args.textbook, [0], args.steps)[0]
    clock, faults = StepClock(args.device), []

    def on_step():
        clock()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    textbook.train(cfg, args.steps, on_step, args.device)
    timed = len(faults) - 1 - args.warmup
    print(json.dumps({"steps_per_s": clock.steps_per_s(args.warmup),
                      "page_faults_per_step": (faults[-1] - faults[args.warmup]) / timed,
                      "malloc_tuned": allocator.applied()}))


if __name__ == "__main__":
    _textbook_child(sys.argv[1:])
