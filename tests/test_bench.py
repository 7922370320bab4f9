"""The benchmark suite: the textbook baseline computes the same thing, FLOPs are counted right, the
timing helpers time the real loop, and `python -m manifold_sweeps.bench --quick` reports every figure."""

import json
import platform
import random
import subprocess
import sys
import types

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from manifold_sweeps.bench import __main__ as harness
from manifold_sweeps.bench import kernels, textbook
from manifold_sweeps.bench import training as bench_training
from manifold_sweeps.bench.flops import training_step_flops
from manifold_sweeps.bench.runs import pack_configs, train_timed
from manifold_sweeps.bench.timing import StepClock, interleaved
from manifold_sweeps.model.transformer import ModelShape, Transformer
from manifold_sweeps.training import allocator
from manifold_sweeps.paths import REPO_ROOT
from manifold_sweeps.task.layout import TokenLayout
from manifold_sweeps.training.loop import train_pack

from .conftest import compose_config


def perturbed_model(cfg, seed=0) -> Transformer:
    """A one-run model whose LayerNorm affines and biases are random too (initialised, they are 1 and 0)."""
    net = Transformer(ModelShape.from_config(cfg), 1)
    net.init_run_(0, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("weight", "bias")) or ".b_" in name or name == "b_head":
                p.copy_(p + 0.3 * torch.randn(p.shape, generator=gen))
    return net


def load_into_textbook(net: Transformer, tb: textbook.TextbookTransformer) -> None:
    """The packed model's run 0, written into the textbook model (weights there are out x in)."""
    with torch.no_grad():
        tb.tok_emb.weight.copy_(net.tok_emb[0])
        tb.pos_emb.weight.copy_(net.pos_emb[0])
        for ours, theirs in zip(net.blocks, tb.blocks):
            a = ours.attn
            theirs.ln_1.weight.copy_(ours.ln_attn.weight[0])
            theirs.ln_1.bias.copy_(ours.ln_attn.bias[0])
            theirs.qkv.weight.copy_(torch.cat([a.W_Q[0].T, a.W_K[0].T, a.W_V[0].T]))
            theirs.qkv.bias.copy_(torch.cat([a.b_Q[0], a.b_K[0], a.b_V[0]]))
            theirs.proj.weight.copy_(a.W_O[0].T)
            theirs.proj.bias.copy_(a.b_O[0])
            if ours.mlp is not None:
                theirs.ln_2.weight.copy_(ours.ln_mlp.weight[0])
                theirs.ln_2.bias.copy_(ours.ln_mlp.bias[0])
                theirs.mlp[0].weight.copy_(ours.mlp.W_in[0].T)
                theirs.mlp[0].bias.copy_(ours.mlp.b_in[0])
                theirs.mlp[2].weight.copy_(ours.mlp.W_out[0].T)
                theirs.mlp[2].bias.copy_(ours.mlp.b_out[0])
        tb.ln_f.weight.copy_(net.ln_f.weight[0])
        tb.ln_f.bias.copy_(net.ln_f.bias[0])
        tb.head.weight.copy_(net.W_head[0].T)
        tb.head.bias.copy_(net.b_head[0])


@pytest.mark.parametrize("overrides", [(), ("model=standard", "model.mlp_ratio=2", "model.n_layers=3")])
def test_the_textbook_model_computes_what_the_packed_model_computes(overrides):
    cfg = compose_config("experiment=smoke", *overrides)
    net, tb = perturbed_model(cfg), textbook.TextbookTransformer(cfg)
    load_into_textbook(net, tb)
    tokens = torch.randint(0, cfg.task.vocab_size, (16, cfg.task.seq_len), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(net(tokens[None])[0], tb(tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("readout,positions", [("query", "per_example"), ("last", "per_batch")])
def test_textbook_batches_follow_the_task_layout(readout, positions):
    cfg = compose_config("experiment=smoke", f"task.readout={readout}", f"task.positions={positions}")
    layout = TokenLayout.from_config(cfg.task)
    m = 3
    tokens, labels = textbook.make_batch(layout, m, 64, random.Random(0), positions == "per_batch")
    assert tokens.shape == (64, cfg.task.seq_len) and labels.shape == (64,)
    is_marker = (tokens >= layout.first_marker) & (tokens < layout.first_marker + layout.n_marker_tokens)
    assert (is_marker.sum(dim=1) == m).all()
    pos = is_marker.nonzero()[:, 1].view(64, m)  # sorted within each row
    assert pos.min() >= 1 and pos.max() <= layout.body_length - 2 and (pos.diff(dim=1) >= 2).all()
    assert (tokens.gather(1, pos) == layout.first_marker + torch.arange(m)).all()  # indexed markers, in order
    values = tokens.gather(1, pos + 1)
    assert (values < layout.modulus).all() and (labels == values.sum(dim=1) % layout.modulus).all()
    if readout == "query":
        assert (tokens[:, -1] == layout.query_token).all()
    if positions == "per_batch":
        assert (pos == pos[0]).all()
    else:
        assert len({tuple(p) for p in pos.tolist()}) > 1
    others = tokens.clone()
    others[:, -1] = layout.first_distractor if readout == "query" else others[:, -1]
    others = others.scatter(1, pos, layout.first_distractor).scatter(1, pos + 1, layout.first_distractor)
    assert (others >= layout.first_distractor).all() and (others < layout.vocab_size).all()


def test_textbook_training_learns_on_the_same_data():
    cfg = compose_config("experiment=smoke", "curriculum=single", "task.m=1", "optimizer.lr=3e-3")
    clock = StepClock()
    first = textbook.train(cfg, 1, StepClock())
    last = textbook.train(cfg, 150, clock)
    assert len(clock.times) == 151 and last < first - 0.3  # C=8 classes: chance is ln 8 = 2.08


@pytest.mark.parametrize("mlp_ratio", [0, 2])
def test_flop_count_matches_torch_flop_counter(mlp_ratio):
    """The math attention backend runs attention as countable matmuls (the flash kernel is not counted)."""
    cfg = compose_config("experiment=smoke", f"model.mlp_ratio={mlp_ratio}", "model.n_layers=3")
    shape = ModelShape.from_config(cfg)
    net = Transformer(shape, 1)
    net.init_run_(0, 0)
    tb = textbook.TextbookTransformer(cfg)
    tokens = torch.randint(0, cfg.task.vocab_size, (16, cfg.task.seq_len))
    for model, x, packed in ((net, tokens[None], True), (tb, tokens, False)):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x).sum().backward()
        assert counter.get_total_flops() == training_step_flops(shape, 16, packed=packed)
    assert training_step_flops(shape, 16, packed=False) > training_step_flops(shape, 16)


def test_the_step_clock_sees_every_step_of_the_real_loop(tmp_path):
    cfgs = pack_configs("smoke", [0, 1], steps=12)
    clock = StepClock()
    assert train_pack(cfgs, [tmp_path / "a", tmp_path / "b"], should_stop=clock) == ["completed"] * 2
    assert len(clock.times) == 13 and clock.times == sorted(clock.times)  # polls at steps 0..12
    assert clock.steps_per_s(skip=2) > 0
    with pytest.raises(ValueError, match="need more than skip"):
        clock.steps_per_s(skip=12)
    assert len(train_timed(cfgs[:1]).times) == 13


def test_interleaved_calls_the_tasks_in_turn():
    calls = []
    figures = interleaved({"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, rounds=3)
    assert calls == ["a", "b"] * 3 and figures == {"a": [1.0] * 3, "b": [2.0] * 3}


@pytest.mark.parametrize("result,error", [(RuntimeError("boom"), "RuntimeError: boom"),
                                          ({"nested": {"x": 1}}, "not flat: ['nested']")])
def test_a_failing_benchmark_module_reports_its_error(tmp_path, monkeypatch, result, error):
    def run(quick=False):
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setitem(sys.modules, "manifold_sweeps.bench.broken", types.SimpleNamespace(run=run))
    assert harness.run_here("broken", True, tmp_path / "figures.json") == 1
    assert error in json.loads((tmp_path / "figures.json").read_text())["error"]


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_textbook_baseline_trains_without_our_malloc_options_even_after_our_loop_set_them(tmp_path):
    """The baseline runs in a child process: our loop's malloc options (training/allocator.py) would
    otherwise carry over to it in the benchmark's process, and cannot be undone there."""
    train_pack(pack_configs("smoke", [0], 2), [tmp_path / "run"])
    assert allocator.applied()  # set in this process by our loop
    result = bench_training.textbook_in_child("paper", steps=6, warmup=2, device="cpu")
    assert result["malloc_tuned"] is False and result["steps_per_s"] > 0 and result["page_faults_per_step"] >= 0


@pytest.mark.slow
def test_make_bench_quick_writes_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.bench", "--quick", "--out", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/7] training" in proc.stdout and "round 1/1" in proc.stdout  # progress is shown
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["quick"] and report["machine"]["cores"] >= 1
    assert set(report["modules"]) == {"training", "packed", "snapshots", "commutator", "aggregation", "probes", "sweep"}
    assert not any("error" in figures for figures in report["modules"].values()), report["modules"]
    training, packed = report["modules"]["training"], report["modules"]["packed"]
    for preset in ("paper", "reference_code"):
        for key in ("steps_per_s", "compiled_steps_per_s", "textbook_steps_per_s", "speedup_vs_textbook",
                    "compiled_speedup_vs_textbook", "gflop_per_step", "roofline_fraction",
                    "compiled_roofline_fraction", "textbook_roofline_fraction", "flop_kernels_steps_per_s",
                    "flop_kernels_gflops", "flop_kernels_roofline_fraction", "flop_kernels_share"):
            assert training[f"{preset}_{key}"] > 0, key
        assert training[f"{preset}_textbook_page_faults_per_step"] >= 0  # glibc's adaptive thresholds: may be 0
        assert isinstance(training[f"{preset}_compile_s"], float)
    assert training["matmul_peak_gflops"] > 0 and training["paper_gflop_per_step"] == pytest.approx(1.3253, abs=1e-4)
    for key in ("packed_1_model_steps_per_s", "packed_4_model_steps_per_s", "versus_packed_wall_s",
                "versus_separate_wall_s", "versus_wall_speedup", "versus_steady_speedup",
                "versus_packed_peak_rss_mib", "versus_separate_peak_rss_mib"):
        assert packed[key] > 0, key
    if packed["versus_separate_threads_per_process"] == 1:  # a CPU with no more cores than the 2 runs
        assert packed["versus_per_thread_speedup"] == pytest.approx(
            packed["versus_per_thread_packed_model_steps_per_s"] / packed["versus_per_thread_separate_model_steps_per_s"],
            rel=1e-2)
    modules = report["modules"]
    snapshots = modules["snapshots"]
    assert snapshots["snapshot_runs"] == 4 and snapshots["snapshot_write_ms_per_run"] > 0
    assert snapshots["snapshot_synchronous_stall_ms"] > 0 and snapshots["snapshot_threaded_stall_ms"] > 0
    assert snapshots["snapshot_loop_speed_while_writing"] > 0
    # the other stages' cost figures (their issues ask for them in make bench)
    assert modules["commutator"]["commutator_overhead_pct"] > 0 and modules["commutator"]["commutator_files_mb"] > 0
    assert any(k.startswith("aggregate_") and k.endswith("_wall_s") for k in modules["aggregation"])
    assert any(k.startswith("probes_") and k.endswith("_run_wall_s") for k in modules["probes"])
    sweep = modules["sweep"]  # the paper's sweep through the real command, cut to 2 seeds x 2 m x 4 steps
    assert (sweep["sweep_runs"], sweep["sweep_completed"], sweep["sweep_steps_per_run"]) == (4, 4, 4)
    assert sweep["sweep_wall_s"] > 0 and sweep["sweep_device"] == "cpu"
    table = (tmp_path / "bench.md").read_text()
    assert "| training | paper_speedup_vs_textbook |" in table and "| packed | versus_wall_speedup |" in table


def test_the_recorded_step_kernels_carry_exactly_the_counted_flops():
    """Replayed alone, the recorded kernels execute the step's counted FLOPs (math attention backend,
    whose products torch's counter sees); with the default backend the flash kernels are kept too."""
    cfg = compose_config("experiment=smoke", "model.n_layers=3")
    shape = ModelShape.from_config(cfg)
    with sdpa_kernel(SDPBackend.MATH):
        ops = kernels.record_step(cfg)
    assert {op.func.overloadpacket for op in ops} <= {torch.ops.aten.bmm, torch.ops.aten.baddbmm}
    with FlopCounterMode(display=False) as counter:
        kernels.replay(ops)
    assert counter.get_total_flops() == training_step_flops(shape, int(cfg.train.batch_size))
    flash = [op for op in kernels.record_step(cfg) if "attention" in op.func.__name__]
    assert len(flash) == 2 * shape.n_layers  # forward and backward of every layer
    assert kernels.replays_per_s(ops, 0.01) > 0
