"""Benchmark: packed seeds, many runs of the `paper` preset trained in one process with stacked weights.

Figures:
- packed_<P>_model_steps_per_s for P = 1, 4, 20 seeds in one process: the real loop, timed step by
  step after a warm-up (bench/runs.py), the pack sizes in turn round after round, medians.
- versus_*: 20 seeds packed vs the same 20 runs trained separately, as whole processes running the
  same code (`python -m manifold_sweeps.bench.packed --child ...`), commutator measurements off (a
  300-step run would measure them once, at step 0: a far larger share than in a 20k-step run).
  "Packed" is one process training
  the 20 runs with torch's default threads. "Separate" is 20 processes of one run each: on a CPU as
  many at a time as the machine has cores, each with cores / parallel threads (1 on a 2-core
  machine: more would oversubscribe the cores, which costs far more than it gains); on a GPU one at
  a time, each with the whole GPU (processes sharing a GPU take turns on it, and their steady rates
  would overlap only in part).
  versus_packed_wall_s and versus_separate_wall_s cover everything (interpreter start, imports,
  setup, evaluations, training, files), with the model-steps/s they make and their ratio
  versus_wall_speedup. The steady state leaves start-up out, from each process's own step clock:
  versus_packed_steady_model_steps_per_s (20 x the pack's steps/s),
  versus_separate_steady_model_steps_per_s (parallel x the median single run's steps/s) and
  versus_steady_speedup. Peak resident memory: of the packed process, and of the largest separate one.
- versus_per_thread_*: where the separate runs had one thread each (a CPU with fewer cores than
  runs), the pack trained once more in a process of one thread, for a third of the steps: its
  model-steps/s against a separate run's steps/s is what packing gains per thread of work
  (versus_per_thread_speedup), the bound on what it can gain over separate runs that keep every
  core busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..launch.cpu_threads import usable_cores
from .runs import bench_device, pack_configs, train_timed
from .timing import interleaved, median

PRESET = "paper"
FULL = dict(pack_sizes=(1, 4, 20), steps={1: 200, 4: 60, 20: 25}, warmup=3, rounds=3, versus_runs=20,
            versus_steps=300)
QUICK = dict(pack_sizes=(1, 4), steps={1: 5, 4: 5}, warmup=1, rounds=1, versus_runs=2, versus_steps=5)


def run(quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    def pack_rate(P: int) -> float:
        return P * train_timed(pack_configs(PRESET, range(P), plan["steps"][P])).steps_per_s(plan["warmup"])

    tasks = {f"{P} seeds": (lambda P=P: pack_rate(P)) for P in plan["pack_sizes"]}
    rates = interleaved(tasks, plan["rounds"], "packed ")
    figures = {f"packed_{P}_model_steps_per_s": round(median(rates[f"{P} seeds"]), 2) for P in plan["pack_sizes"]}
    figures.update(_packed_vs_separate(plan["versus_runs"], plan["versus_steps"], plan["warmup"]))
    return figures


def _packed_vs_separate(n_runs: int, steps: int, warmup: int) -> dict:
    cores = usable_cores()
    on_gpu = bench_device(PRESET).type == "cuda"
    parallel = 1 if on_gpu else min(cores, n_runs)
    threads = max(1, cores // parallel)
    with tempfile.TemporaryDirectory(prefix="manifold-bench-") as tmp:
        tmp = Path(tmp)
        print(f"  versus: {n_runs} runs x {steps} steps packed in one process", flush=True)
        packed = _run_children([_child_command(range(n_runs), steps, warmup, torch.get_num_threads(), tmp / "packed")],
                               parallel=1)
        print(f"  versus: {n_runs} separate processes, {parallel} at a time, {threads} thread(s) each", flush=True)
        outs = [tmp / f"separate{s}" for s in range(n_runs)]
        separate = _run_children([_child_command([s], steps, warmup, threads, out) for s, out in enumerate(outs)],
                                 parallel)
        packed_child, separate_children = _read(tmp / "packed"), [_read(out) for out in outs]
        separate_one = median([c["steps_per_s"] for c in separate_children])  # one separate run's steps/s
        per_thread = {}
        if threads == 1 and not on_gpu:
            one_steps = max(warmup + 2, steps // 3)
            print(f"  versus: {n_runs} runs x {one_steps} steps packed in one process of 1 thread", flush=True)
            _run_children([_child_command(range(n_runs), one_steps, warmup, 1, tmp / "packed1")], parallel=1)
            packed_one = n_runs * _read(tmp / "packed1")["steps_per_s"]
            per_thread = {
                "versus_per_thread_packed_model_steps_per_s": round(packed_one, 2),
                "versus_per_thread_separate_model_steps_per_s": round(separate_one, 2),
                "versus_per_thread_speedup": round(packed_one / separate_one, 3),
            }
    packed_rate = n_runs * packed_child["steps_per_s"]
    separate_rate = parallel * separate_one
    model_steps = n_runs * steps
    return {
        "versus_runs": n_runs,
        "versus_steps_per_run": steps,
        "versus_separate_parallel_processes": parallel,
        "versus_separate_threads_per_process": threads,
        "versus_packed_wall_s": round(packed["wall_s"], 2),
        "versus_separate_wall_s": round(separate["wall_s"], 2),
        "versus_packed_model_steps_per_s": round(model_steps / packed["wall_s"], 2),
        "versus_separate_model_steps_per_s": round(model_steps / separate["wall_s"], 2),
        "versus_wall_speedup": round(separate["wall_s"] / packed["wall_s"], 3),
        "versus_packed_steady_model_steps_per_s": round(packed_rate, 2),
        "versus_separate_steady_model_steps_per_s": round(separate_rate, 2),
        "versus_steady_speedup": round(packed_rate / separate_rate, 3),
        "versus_packed_peak_rss_mib": round(packed_child["peak_rss_mib"], 1),
        "versus_separate_peak_rss_mib": round(max(c["peak_rss_mib"] for c in separate_children), 1),
        **per_thread,
    }


def _child_command(seeds, steps: int, warmup: int, threads: int, out: Path) -> list[str]:
    return [sys.executable, "-m", __name__, "--seeds", ",".join(map(str, seeds)), "--steps", str(steps),
            "--warmup", str(warmup), "--threads", str(threads), "--out", str(out)]


def _run_children(commands: list[list[str]], parallel: int) -> dict:
    """Run the commands, `parallel` at a time; the wall time of them all."""
    pending, running = list(commands), {}
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < parallel:
            command = pending.pop(0)
            log = Path(command[-1]).with_suffix(".log")
            with open(log, "wb") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            running[proc.pid] = (proc, log)
        pid, status = os.wait()
        if pid not in running:
            continue
        proc, log = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark child {proc.args} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {"wall_s": time.perf_counter() - t0}


def _read(out: Path) -> dict:
    return json.loads((out / "rate.json").read_text())


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the process's own memory map; ru_maxrss
    would start from the parent's size at fork, which a benchmark parent inflates."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(argv: list[str]) -> None:
    """One benchmark process: train the given seeds packed together, write the pack's steps/s."""
    parser = argparse.ArgumentParser(prog="python -m manifold_sweeps.bench.packed")
    parser.add_argument("--seeds", required=True, help="comma-separated seeds, trained packed together")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True, help="steps left out of the steady-state rate")
    parser.add_argument("--threads", type=int, required=True, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    # Commutators off: a short run would measure them once, at step 0, against once per ~490 steps in
    # a real run, and that one measurement took a 20-run pack about half its wall time.
    # bench/commutator.py measures their cost.
    rate = train_timed(pack_configs(PRESET, seeds, args.steps, "commutator.every=0")).steps_per_s(args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rate.json").write_text(json.dumps({"steps_per_s": rate, "peak_rss_mib": _peak_rss_mib()}) + "\n")


if __name__ == "__main__":
    _child(sys.argv[1:])
