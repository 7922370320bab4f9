"""SGD commutators: the stable form, the projections, the run-directory records and the tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import ConfigCompositionException

from manifold_sweeps.commutator.basis import top_directions, trajectory_basis
from manifold_sweeps.commutator import measure
from manifold_sweeps.commutator.measure import measure_pair, model_grad_pair, stable_commutator
from manifold_sweeps.commutator.projection import projection_stats
from manifold_sweeps.commutator.tables import commutator_rows, commutator_summary
from manifold_sweeps.config.validation import ConfigError, validate
from manifold_sweeps.model.transformer import ModelShape, Transformer
from manifold_sweeps.rundir.checkpoint import load_checkpoint
from manifold_sweeps.rundir.commutators import COLUMNS, load_commutators, load_deltas, read_meta
from manifold_sweeps.rundir.metrics import load_metrics
from manifold_sweeps.task.generator import sample_batch
from manifold_sweeps.task.layout import TokenLayout
from manifold_sweeps.training import loop
from manifold_sweeps.training.loop import train

from .conftest import compose_config


def autograd_pair(loss_a, loss_b):
    """grad_pair from two scalar loss functions of a parameter dict."""

    def grads(loss, theta):
        theta = {n: t.detach().requires_grad_() for n, t in theta.items()}
        g = torch.autograd.grad(loss(theta), list(theta.values()), materialize_grads=True)
        return dict(zip(theta, g))

    return lambda theta_a, theta_b: (grads(loss_a, theta_a), grads(loss_b, theta_b))


def small_model(d_model=16, n_runs=1, seed=3):
    cfg = compose_config("experiment=smoke", f"model.d_model={d_model}")
    model = Transformer(ModelShape.from_config(cfg), n_runs)
    for p in range(n_runs):
        model.init_run_(p, seed + p)
    return model, TokenLayout.from_config(cfg.task)


def batch_pairs(layout, n_runs, n_pairs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n_pairs):
        a = [sample_batch(layout, 2, 16, gen) for _ in range(n_runs)]
        b = [sample_batch(layout, 1, 16, gen) for _ in range(n_runs)]
        yield ((torch.stack([x.tokens for x in a]), torch.stack([x.labels for x in a])),
               (torch.stack([x.tokens for x in b]), torch.stack([x.labels for x in b])))


# --- the commutator itself --------------------------------------------------------------------------


def test_on_quadratic_losses_delta_is_the_closed_form_and_the_two_path_difference():
    gen = torch.Generator().manual_seed(0)
    n, eta = 7, 0.05

    def spd():
        m = torch.randn(n, n, generator=gen, dtype=torch.float64)
        return m @ m.T / n + torch.eye(n, dtype=torch.float64)

    H_a, H_b = spd(), spd()
    b_a, b_b = torch.randn(2, n, generator=gen, dtype=torch.float64)
    theta0 = {"w": torch.randn(n, generator=gen, dtype=torch.float64)}
    loss_a = lambda t: 0.5 * t["w"] @ H_a @ t["w"] + b_a @ t["w"]
    loss_b = lambda t: 0.5 * t["w"] @ H_b @ t["w"] + b_b @ t["w"]

    delta, g_a, g_b = stable_commutator(autograd_pair(loss_a, loss_b), theta0, eta)
    closed = eta**2 * (H_b @ g_a["w"] - H_a @ g_b["w"])
    assert closed.norm() > 1e-3
    torch.testing.assert_close(delta["w"], closed, rtol=1e-10, atol=1e-14)
    # ... and it is theta_AB - theta_BA (paper eq. 3-5)
    theta_a = theta0["w"] - eta * g_a["w"]
    theta_b = theta0["w"] - eta * g_b["w"]
    theta_ab = theta_a - eta * (H_b @ theta_a + b_b)
    theta_ba = theta_b - eta * (H_a @ theta_b + b_a)
    torch.testing.assert_close(delta["w"], theta_ab - theta_ba, rtol=1e-9, atol=1e-14)


def test_losses_on_disjoint_parameters_commute():
    gen = torch.Generator().manual_seed(1)
    theta0 = {"u": torch.randn(5, generator=gen), "v": torch.randn(5, generator=gen)}
    loss_a = lambda t: (torch.sin(t["u"]) * t["u"] ** 3).sum() + t["u"].exp().sum()  # u alone, not quadratic
    loss_b = lambda t: torch.tanh(t["v"]).pow(2).sum() * t["v"].sum()  # v alone
    delta, g_a, g_b = stable_commutator(autograd_pair(loss_a, loss_b), theta0, eta=0.1)
    assert g_a["u"].abs().max() > 0.1 and g_b["v"].abs().max() > 0.1
    for name in ("u", "v"):
        assert delta[name].abs().max() <= 1e-12


def test_on_the_model_float32_agrees_with_float64_and_beats_the_two_path_difference():
    model, layout = small_model()
    eta = 1e-3
    stable_err, naive_err = [], []
    for batch_a, batch_b in batch_pairs(layout, 1, 3):
        d32 = float(measure_pair(model, batch_a, batch_b, eta, torch.float32).defect[0])
        d64 = float(measure_pair(model, batch_a, batch_b, eta, torch.float64).defect[0])
        stable_err.append(abs(d32 / d64 - 1))
        # the reference code's form: two full parameter vectors subtracted, in float32
        naive_err.append(abs(two_path_defect(model, batch_a, batch_b, eta) / d64 - 1))
    assert max(stable_err) < 0.01
    assert max(stable_err) < max(naive_err) / 10


def test_with_steps_small_next_to_the_weights_float64_keeps_the_commutator_and_float32_loses_it():
    # A trained model's eta g is about 1e-7 per coordinate next to O(1) weights; at initialisation the
    # gradients are larger, so a smaller eta puts the perturbed points theta0 - eta g in that regime.
    # Reference: the two-path difference theta_AB - theta_BA in float64 (itself good to ~0.2% here).
    model, layout = small_model()
    model64 = small_model()[0].double()
    eta = 1e-7
    err32, err64 = [], []
    for batch_a, batch_b in batch_pairs(layout, 1, 3):
        reference = two_path_defect(model64, batch_a, batch_b, eta)
        for dtype, errors in ((torch.float32, err32), (torch.float64, err64)):
            errors.append(abs(float(measure_pair(model, batch_a, batch_b, eta, dtype).defect[0]) / reference - 1))
    assert max(err64) < 0.01
    assert max(err32) > 0.1
    assert compose_config().commutator.precision.name == "float64"


def _norm(params):
    return sum(t.double().square().sum() for t in params.values()).sqrt()


def two_path_defect(model, batch_a, batch_b, eta):
    """D from theta_AB - theta_BA: two full parameter vectors subtracted, in the model's own precision."""
    grad_pair = model_grad_pair(model, batch_a, batch_b)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    g_a, g_b = grad_pair(theta, theta)
    after_a = {n: theta[n] - eta * g_a[n] for n in g_a}
    after_b = {n: theta[n] - eta * g_b[n] for n in g_a}
    g_a_after_b, g_b_after_a = grad_pair(after_b, after_a)
    two_path = sum(((after_a[n] - eta * g_b_after_a[n]) - (after_b[n] - eta * g_a_after_b[n])).double().square().sum()
                   for n in g_a).sqrt()
    return float(two_path / (eta**2 * _norm(g_a) * _norm(g_b)))


@pytest.mark.parametrize("runs_per_pass", [4, 2])  # one pass over the 3 runs; or passes of 2 and 1
def test_measuring_leaves_the_model_untouched_and_packed_runs_match_runs_alone(runs_per_pass, monkeypatch):
    monkeypatch.setattr(measure, "CPU_RUNS_PER_PASS", runs_per_pass)
    packed, layout = small_model(n_runs=3)
    before = {n: p.detach().clone() for n, p in packed.named_parameters()}
    pairs = list(batch_pairs(layout, 3, 2))
    results = [measure_pair(packed, a, b, 1e-3) for a, b in pairs]
    for n, p in packed.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None
    for run in range(3):
        alone, _ = small_model(n_runs=1, seed=3 + run)
        for (a, b), res in zip(pairs, results):
            one = measure_pair(alone, (a[0][run : run + 1], a[1][run : run + 1]), (b[0][run : run + 1], b[1][run : run + 1]), 1e-3)
            torch.testing.assert_close(res.defect[run], one.defect[0], rtol=1e-4, atol=0)
            torch.testing.assert_close(res.delta_attention[run], one.delta_attention[0], rtol=1e-3, atol=1e-10)
    res = results[0]
    assert res.delta_attention.shape == (3, 2 * 4, 16 * 16)
    assert (res.delta_norm_attention <= res.delta_norm).all() and (res.cos_ab.abs() <= 1).all()


# --- basis and projections --------------------------------------------------------------------------


def planted_trajectory(gen, n, n_blocks, d, k):
    """Snapshots moving in exactly k random orthonormal directions per block, plus a fixed offset."""
    dirs = torch.linalg.qr(torch.randn(n_blocks, d * d, k, generator=gen, dtype=torch.float64))[0]  # (nb, D, k)
    coef = torch.randn(n, n_blocks, k, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0][:k])
    offset = torch.randn(n_blocks, d * d, generator=gen, dtype=torch.float64)
    snaps = offset + torch.einsum("nbk,bdk->nbd", coef, dirs)  # (n, nb, D)
    return [snaps[:, b].reshape(n, d, d).numpy() for b in range(n_blocks)], dirs


def test_the_causal_basis_spans_the_trajectory_and_is_capped_by_its_length():
    gen = torch.Generator().manual_seed(2)
    blocks, dirs = planted_trajectory(gen, n=12, n_blocks=3, d=6, k=2)
    basis, dims = trajectory_basis(blocks, k=3)
    assert dims.tolist() == [2, 2, 2] and basis.shape == (3, 36, 3)
    for b in range(3):
        v = basis[b, :, :2]
        torch.testing.assert_close(v.T @ v, torch.eye(2, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(v @ v.T, dirs[b] @ dirs[b].T, atol=1e-8, rtol=0)  # the same subspace
        assert basis[b, :, 2].abs().max() == 0
    one, _ = trajectory_basis([b[:1] for b in blocks], k=3)  # one snapshot: no direction yet
    two_dims = trajectory_basis([b[:2] for b in blocks], k=3)[1]
    assert one.abs().max() == 0 and two_dims.tolist() == [1, 1, 1]
    assert top_directions(torch.ones(4, 9), 3).shape == (9, 0)  # a trajectory that never moved


def test_rho_exec_is_one_inside_the_basis_and_zero_orthogonal_to_it():
    gen = torch.Generator().manual_seed(3)
    blocks, _ = planted_trajectory(gen, n=10, n_blocks=4, d=5, k=3)
    basis, dims = trajectory_basis(blocks, k=3)
    inside = torch.einsum("ndk,sk->snd", basis, torch.randn(6, 3, generator=gen, dtype=torch.float64))  # (6, 4, 25)
    noise = torch.randn(6, 4, 25, generator=gen, dtype=torch.float64)
    outside = noise - torch.einsum("ndk,snk->snd", basis, torch.einsum("snd,ndk->snk", noise, basis))
    stats_in = projection_stats(inside, basis, dims, trials=5, generator=gen)
    stats_out = projection_stats(outside, basis, dims, trials=5, generator=gen)
    torch.testing.assert_close(stats_in["rho_exec"], torch.ones(6, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(stats_in["outside_energy"], torch.zeros(6, dtype=torch.float64), atol=1e-9, rtol=0)
    assert stats_out["rho_exec"].abs().max() < 1e-10
    torch.testing.assert_close(stats_out["outside_energy"], torch.ones(6, dtype=torch.float64), atol=1e-9, rtol=0)
    assert (stats_in["exec_random_ratio"] > 1).all()


def test_the_random_baseline_is_sqrt_k_over_n_for_isotropic_deltas():
    gen = torch.Generator().manual_seed(4)
    n_blocks, size, k = 4, 400, 3
    dims = torch.tensor([3, 3, 2, 1])
    basis = torch.zeros(n_blocks, size, k, dtype=torch.float64)
    for b, j in enumerate(dims.tolist()):
        basis[b, :j, :j] = torch.eye(j)  # any basis with these block dimensions
    delta = torch.randn(200, n_blocks, size, generator=gen, dtype=torch.float64)
    stats = projection_stats(delta, basis, dims, trials=10, generator=gen)
    expected = (dims.sum() / (n_blocks * size)) ** 0.5
    assert float(stats["rho_random"].mean()) == pytest.approx(float(expected), rel=0.05)
    # ... and an isotropic delta sees the execution basis as one more random subspace
    assert float(stats["rho_exec"].mean()) == pytest.approx(float(expected), rel=0.1)
    empty = projection_stats(delta[:2], basis * 0, dims * 0, trials=2, generator=gen)
    assert torch.isnan(empty["rho_exec"]).all() and torch.isnan(empty["exec_random_ratio"]).all()


# --- configuration ----------------------------------------------------------------------------------


def test_commutator_defaults_and_bad_values():
    com = compose_config().commutator
    assert (com.every, com.samples, com.eta, com.basis_k, com.random_trials) == (500, 9, 1e-3, 3, 10)
    assert (com.precision.name, com.save_deltas.name) == ("float64", "median")
    for override, match in [
        ("commutator.every=-1", r"commutator.every=-1 .*allowed: 0 \(off\)"),
        ("commutator.samples=0", r"commutator.samples=0 .*allowed: a positive integer"),
        ("commutator.basis_k=0", r"commutator.basis_k=0 "),
        ("commutator.random_trials=0", r"commutator.random_trials=0 "),
        ("commutator.eta=0", r"commutator.eta=0.0 .*allowed: a positive number"),
    ]:
        with pytest.raises(ConfigError, match=match):
            validate(compose_config(override))
    for override in ("commutator.precision=float16", "commutator.save_deltas=some"):
        with pytest.raises(ConfigCompositionException):
            compose_config(override)


def test_the_probe_draws_from_the_current_curriculum_stage_and_its_own_seeded_streams(tmp_path):
    from manifold_sweeps.commutator.probe import CommutatorProbe

    cfg = compose_config("experiment=smoke", "curriculum=sequential", "commutator.every=10", "commutator.samples=2")
    model, _ = small_model()
    snapshots = np.random.default_rng(0).standard_normal((3, 2, 4, 16, 16)).astype(np.float32)

    def measured(step, run_dir):
        CommutatorProbe([cfg], [run_dir], torch.device("cpu")).measure(step, model, [snapshots])
        return load_commutators(run_dir)

    early, late = measured(10, tmp_path / "a"), measured(30, tmp_path / "b")  # stages: m=1 to step 19, then m=2
    assert (early[["m_a", "m_b"]] == 1).all().all() and (late[["m_a", "m_b"]] == 2).all().all()
    assert measured(10, tmp_path / "c").equals(early)  # the same step draws the same batches again
    assert not np.allclose(measured(20, tmp_path / "d").defect, early.defect)
    assert (early.basis_dim == 16).all()  # 3 snapshots: 2 directions in each of 8 matrices


# --- during training --------------------------------------------------------------------------------

SMOKE = ("experiment=smoke", "commutator.every=10", "commutator.samples=3")


@pytest.fixture(scope="module")
def measured_runs(tmp_path_factory):
    """Two smoke runs of one condition with commutators every 10 steps (deltas: median, all), one without."""
    root = tmp_path_factory.mktemp("commutators")
    train(compose_config(*SMOKE), root / "median")
    train(compose_config(*SMOKE, "seed=1", "commutator.save_deltas=all"), root / "all")
    train(compose_config(*SMOKE, "commutator.every=0"), root / "off")
    return root


@pytest.mark.slow
def test_commutators_are_recorded_and_leave_training_byte_identical(measured_runs):
    on, off = measured_runs / "median", measured_runs / "off"
    for name in ("trajectory.npy", "trajectory_steps.npy"):
        assert (on / name).read_bytes() == (off / name).read_bytes()
    assert load_metrics(on).equals(load_metrics(off))
    for key, value in load_checkpoint(on)["model"].items():
        assert torch.equal(value, load_checkpoint(off)["model"][key])
    assert not (off / "commutators.parquet").exists()

    rows = load_commutators(on)
    assert list(rows.columns) == list(COLUMNS)
    assert rows[["step", "sample"]].values.tolist() == [[s, k] for s in (0, 10, 20, 30, 40) for k in range(3)]
    assert rows.m_a.isin([1, 2]).all() and rows.m_b.isin([1, 2]).all()
    assert (rows.defect > 0).all() and (rows.attention_share.between(0, 1)).all()
    np.testing.assert_allclose(rows.defect, rows.delta_norm / (rows.step_norm_a * rows.step_norm_b))
    # smoke: 2 layers x 4 matrices; snapshots every 10 steps, so step s has s/10 + 1 of them
    assert rows.groupby("step").basis_dim.first().tolist() == [0, 8, 16, 24, 24]
    later = rows[rows.step > 0]
    assert later.rho_exec.between(0, 1).all() and (later.rho_random > 0).all()
    np.testing.assert_allclose(later.outside_energy, 1 - later.rho_exec**2)
    assert rows[rows.step == 0].rho_exec.isna().all()

    index, deltas = load_deltas(on)
    assert deltas.shape == (5, 2, 4, 16, 16) and deltas.dtype == np.float32
    for (step, sample), delta in zip(index, deltas):  # the median-D sample's attention part
        at = rows[rows.step == step]
        assert at.defect.rank(method="first").iloc[sample] == 2
        assert np.linalg.norm(delta) == pytest.approx(at.delta_norm_attention.iloc[sample], rel=1e-5)
    assert read_meta(on)["save_deltas"] == "median"
    assert len(load_deltas(measured_runs / "all")[0]) == 15


@pytest.mark.slow
def test_a_resumed_run_writes_identical_commutator_records(measured_runs, tmp_path, monkeypatch):
    cfg = compose_config(*SMOKE, "seed=1", "commutator.save_deltas=all")  # measured_runs/"all"; checkpoints every 20
    real, calls = loop.sample_batches, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 26:  # during step 25: records of steps 0, 10, 20 exist, the checkpoint is at 20
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", crashing)
    with pytest.raises(RuntimeError):
        train(cfg, tmp_path / "split")
    assert load_commutators(tmp_path / "split").step.max() == 20
    monkeypatch.setattr(loop, "sample_batches", real)
    assert train(cfg, tmp_path / "split") == "completed"
    whole, split = measured_runs / "all", tmp_path / "split"
    assert load_commutators(whole).equals(load_commutators(split))
    for name in ("commutator_deltas.npy", "commutator_deltas_index.npy", "trajectory.npy"):
        assert (whole / name).read_bytes() == (split / name).read_bytes()


# --- tables -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_commutator_rows_add_the_whole_trajectory_basis_where_deltas_were_saved(measured_runs):
    rows = commutator_rows(measured_runs / "median", run_id="r0")
    assert rows.run_id.eq("r0").all() and len(rows) == 15
    saved = rows.rho_exec_final.notna()
    index, _ = load_deltas(measured_runs / "median")
    assert sorted(map(tuple, rows.loc[saved, ["step", "sample"]].values.tolist())) == sorted(map(tuple, index.tolist()))
    assert (rows.loc[saved, "basis_dim_final"] == 24).all() and rows.loc[~saved, "basis_dim_final"].isna().all()
    # at the last step the causal basis is the whole trajectory's, and the random stream is the same
    # (the _final columns project the saved deltas, stored as float32: equal to float32 rounding)
    last = rows[saved & (rows.step == 40)].iloc[0]
    for name in ("rho_exec", "rho_random", "outside_energy", "exec_random_ratio"):
        assert last[f"{name}_final"] == pytest.approx(last[name], rel=1e-6)
    assert rows.loc[saved & (rows.step == 0), "rho_exec_final"].between(0, 1).all()  # defined now
    assert commutator_rows(measured_runs / "all").rho_exec_final.notna().all()
    off = commutator_rows(measured_runs / "off", run_id="x")
    assert off.empty and "rho_exec_final" in off.columns


def test_commutator_summary_takes_per_run_medians_by_phase_then_mean_and_sd_over_seeds():
    rows, runs = [], []
    for cond in ("a", "b"):
        for seed in (0, 1):
            run_id = f"{cond}{seed}"
            runs.append({"run_id": run_id, "seed": seed, "task.m": cond})
            # Step 0 has no causal basis yet (NaN projections) and stays out of every phase; the 10
            # measurement steps 100..1000 have one: early = 100, 200; late = 900, 1000.
            for step in range(0, 1100, 100):
                for sample in range(3):
                    value = step + sample + 10 * seed + (1000 if cond == "b" else 0)
                    nan = step == 0
                    rows.append({"run_id": run_id, "step": step, "sample": sample, "defect": value,
                                 "basis_dim": 0 if nan else 8,
                                 "rho_exec": np.nan if nan else value / 1e4, "rho_random": np.nan if nan else 0.1,
                                 "exec_random_ratio": np.nan if nan else value / 1e3,
                                 "outside_energy": np.nan if nan else 1 - (value / 1e4) ** 2})
    runs.append({"run_id": "c0", "seed": 0, "task.m": "c"})  # a run without records adds nothing
    summary = commutator_summary(pd.DataFrame(rows), pd.DataFrame(runs), ["task.m"])
    assert summary[["task.m", "phase"]].values.tolist() == [[c, p] for c in "ab" for p in ("all", "early", "late")]
    at = summary.set_index(["task.m", "phase"])
    # run medians over early samples: seed 0 -> 151 (values 100,101,102,200,201,202), seed 1 -> 161
    assert at.loc[("a", "early"), "defect_mean"] == pytest.approx(156)
    assert at.loc[("a", "early"), "defect_sd"] == pytest.approx(np.std([151, 161], ddof=1))
    assert at.loc[("a", "early"), "rho_exec_mean"] == pytest.approx(0.0156)  # no NaN from step 0
    assert at.loc[("a", "late"), "defect_mean"] == pytest.approx(956)
    assert at.loc[("b", "all"), "defect_mean"] == pytest.approx(1000 + 551 + 5)
    assert at.loc[("b", "late"), "rho_exec_mean"] == pytest.approx(0.1956)
    assert (at["n_runs"] == 2).all() and at.loc[("a", "all"), "rho_random_sd"] == 0


@pytest.mark.slow
def test_the_benchmark_reports_its_figures():
    from manifold_sweeps.bench import commutator

    figures = commutator.run(quick=True)
    assert figures["commutator_preset"] == "smoke" and figures["commutator_measurements_per_run"] == 5
    assert figures["commutator_measure_s"] > 0 and figures["commutator_measure_first_s"] > 0
    assert figures["commutator_train_step_ms"] >= 0 and figures["commutator_overhead_pct"] > 0  # noisy: no bounds
    # smoke: 5 measurements x 8 matrices x 16^2 float32 deltas, plus the small files
    assert 5 * 8 * 256 * 4 / 2**20 < figures["commutator_files_mb"] < 0.2
