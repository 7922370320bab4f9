"""SAE probing: the autoencoder, latent selection, ablations that reach the output, the probe stage."""

import numpy as np
import pandas as pd
import pytest
import torch

from manifold_sweeps.config.validation import ConfigError, validate
from manifold_sweeps.probes.stage import check_overrides
from manifold_sweeps.probes import load_sae_latents, load_sae_probes, probe_run, sae_probe_rows, sae_probe_summary
from manifold_sweeps.probes.ablation import Variant, ablation_accuracy
from manifold_sweeps.probes.activations import logits_from, model_from_checkpoint, residual_stream
from manifold_sweeps.probes.claims import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, sae_execution_claim
from manifold_sweeps.probes.probe import datasets
from manifold_sweeps.probes import sae as sae_module
from manifold_sweeps.probes.sae import QualityAccumulator, SAESettings, SparseAutoencoder, train_sae
from manifold_sweeps.probes.selection import CorrelationAccumulator, top_latents
from manifold_sweeps.probes.variables import VARIABLES, task_variables
from manifold_sweeps.rundir.metrics import load_metrics
from manifold_sweeps.rundir.model_checkpoints import load_model_checkpoint, saved_checkpoint_steps
from manifold_sweeps.task.generator import sample_batch
from manifold_sweeps.task.layout import TokenLayout
from manifold_sweeps.training.loop import train, train_pack
from manifold_sweeps.training.packing import form_packs

from .conftest import compose_config

# A model that learns m=1 (copy the value after the marker) to ~100% in 60 steps.
TRAINED = ("experiment=smoke", "curriculum=single", "task.m=1", "model.d_model=32", "optimizer.lr=3e-3",
           "train.steps=60", "train.batch_size=64", "train.snapshot_every=60", "train.eval_every=60",
           "train.checkpoint_every=1000", "probe.checkpoint_fractions=[1.0]")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, cfg, eval set) of a run trained to high accuracy on m=1."""
    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_config(*TRAINED)
    assert train(cfg, run_dir) == "completed"
    model = model_from_checkpoint(load_model_checkpoint(run_dir, 60), "cpu")
    return model, cfg, datasets(cfg, 256, "eval", "cpu")


def identity_sae(d: int) -> SparseAutoencoder:
    """An exact SAE: latents relu(x) and relu(-x), decoded as relu(x) - relu(-x) = x."""
    sae = SparseAutoencoder(d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


# --- the sparse autoencoder -------------------------------------------------------------------------


def test_the_sae_recovers_planted_sparse_features():
    gen = torch.Generator().manual_seed(0)
    d, n_true, N = 24, 16, 4096
    features = torch.linalg.qr(torch.randn(d, d, generator=gen))[0][:n_true]  # (16, 24) orthonormal
    active = torch.rand(N, n_true, generator=gen) < 0.1  # about 1.6 features per example
    codes = active * (1 + torch.rand(N, n_true, generator=gen))  # magnitudes 1..2
    x = codes @ features + 0.01 * torch.randn(N, d, generator=gen)  # (N, d)
    sae, _ = train_sae(x, SAESettings(n_latents=48, l1=0.3, steps=300, lr=1e-2, batch_size=256),
                       torch.Generator().manual_seed(1))
    directions = sae.W_dec.detach()  # unit rows
    assert torch.allclose(directions.norm(dim=1), torch.ones(48), atol=1e-5)
    best = (features @ directions.T).max(dim=1).values  # best cosine of each planted feature
    assert (best > 0.95).all(), best
    quality = QualityAccumulator(48, "cpu")
    with torch.no_grad():
        quality.add(x, *sae(x))
    q = quality.result()
    assert q["sae_r2"] > 0.95 and q["sae_l0"] < 6, q
    # Random directions would not match: the same check on a fresh random dictionary fails.
    random = torch.nn.functional.normalize(torch.randn(48, d, generator=gen), dim=1)
    assert (features @ random.T).max(dim=1).values.mean() < 0.8


def test_sae_quality_counts_dead_latents_and_active_latents():
    sae = identity_sae(4)
    x = torch.tensor([[1.0, -2.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]])
    quality = QualityAccumulator(8, "cpu")
    quality.add(x, *sae(x))
    q = quality.result()
    # latents 0,1 (relu x), 5 (relu -x of dim 1) fire; dims 2,3 never: 5 of 8 latents dead
    assert q == {"sae_r2": 1.0, "sae_l0": 2.0, "sae_dead_latents": 5}


def test_the_sae_trains_identically_from_the_same_generator():
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    settings = SAESettings(n_latents=16, l1=1.0, steps=20, lr=1e-3, batch_size=64)
    a, _ = train_sae(x, settings, torch.Generator().manual_seed(5))
    b, _ = train_sae(x, settings, torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_minibatch_indices_drawn_in_chunks_train_the_same_sae_as_one_draw_per_step(monkeypatch):
    x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    settings = SAESettings(n_latents=16, l1=1.0, steps=23, lr=1e-3, batch_size=64)  # 23: a short last chunk
    trained = {}
    for chunk in (1, 10):
        monkeypatch.setattr(sae_module, "INDEX_CHUNK", chunk)
        trained[chunk], _ = train_sae(x, settings, torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(trained[1].state_dict().values(), trained[10].state_dict().values()))


# --- the model side and ablations ----------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1])
def test_the_rest_of_the_network_from_the_residual_stream_reproduces_the_model(trained, layer):
    model, _, eval_set = trained
    tokens, _ = eval_set[1]
    x = residual_stream(model, tokens, layer)
    assert x.shape == (tokens.numel(), 32)
    torch.testing.assert_close(logits_from(model, x, layer, len(tokens)), model(tokens.unsqueeze(0))[0])


@pytest.mark.parametrize("layer", [0, 1])  # 1 is the last block: the head reads the readout position itself
def test_the_reconstruction_baseline_equals_the_clean_model_when_the_sae_is_exact(trained, layer):
    model, _, eval_set = trained
    tokens, labels = eval_set[1]
    sae = identity_sae(32)
    x = residual_stream(model, tokens, layer)
    x_hat, _ = sae(x)
    assert torch.equal(x_hat, x)
    torch.testing.assert_close(logits_from(model, x_hat, layer, len(tokens)), model(tokens.unsqueeze(0))[0])
    clean, recon = ablation_accuracy(model, sae, layer, tokens, labels,
                                     [Variant("none", "clean"), Variant("none", "reconstruction")])
    assert clean == recon > 0.9


def test_zeroing_all_latents_changes_accuracy_so_the_ablation_reaches_the_output(trained):
    model, _, eval_set = trained
    tokens, labels = eval_set[1]
    sae = identity_sae(32)
    every = tuple(range(64))
    clean, recon, ablated, some = ablation_accuracy(
        model, sae, 0, tokens, labels,
        [Variant("none", "clean"), Variant("none", "reconstruction"), Variant("all", "zero_selected", every),
         Variant("few", "zero_selected", (0, 1))],
    )
    assert clean == recon > 0.9
    # Every position's stream is zero: the prediction is one class for all, about chance (1/8).
    assert ablated < 0.4
    assert some <= recon
    # Edits away from the readout reach it through the next block's attention (the paper's code
    # recomputed the logits from the last position alone): zeroing every other position moves them.
    x = residual_stream(model, tokens, 0)
    elsewhere = x.view(len(tokens), -1, 32).clone()  # (B, T, d)
    elsewhere[:, :-1] = 0
    moved = logits_from(model, elsewhere.view(-1, 32), 0, len(tokens)) - model(tokens.unsqueeze(0))[0]
    assert moved.abs().max() > 0.1
    # the same through the cheap form: x_hat minus the zeroed latents' share equals decoding zeroed h
    x_hat, h = sae(x)
    zeroed = sae.without(x_hat, h, torch.tensor(every))
    torch.testing.assert_close(zeroed, sae.decode(torch.zeros_like(h)), atol=1e-5, rtol=0)


# --- task variables and latent selection --------------------------------------------------------------


def test_task_variables_per_position():
    layout = TokenLayout(seq_len=8, modulus=5, vocab_size=20, op="add", marker_scheme="indexed", readout="query")
    mk, q, d = layout.first_marker, layout.query_token, layout.first_distractor
    tokens = torch.tensor([[d, mk, 3, d, mk + 1, 4, d, q]])
    values, defined = task_variables(layout, tokens, torch.tensor([2]))
    col = {name: values[:, i].tolist() for i, name in enumerate(VARIABLES)}
    assert col["m"] == [2] * 8 and col["label"] == [2] * 8
    assert col["is_marker"] == [0, 1, 0, 0, 1, 0, 0, 0]
    assert col["is_value"] == [0, 0, 1, 0, 0, 1, 0, 0]
    assert col["is_distractor"] == [1, 0, 0, 1, 0, 0, 1, 0]
    assert col["is_readout"] == [0, 0, 0, 0, 0, 0, 0, 1]
    assert col["running_sum"] == [0, 0, 3, 3, 3, 2, 2, 2]  # (3 + 4) mod 5 = 2
    assert defined[:, VARIABLES.index("value_token")].tolist() == col["is_value"]
    assert values[2, VARIABLES.index("value_token")] == 3

    mul = TokenLayout(seq_len=8, modulus=7, vocab_size=20, op="mul", marker_scheme="indexed", readout="query")
    mk, q, d = mul.first_marker, mul.query_token, mul.first_distractor
    tokens = torch.tensor([[d, mk, 3, d, mk + 1, 4, d, q]])
    values, _ = task_variables(mul, tokens, torch.tensor([5]))
    assert values[:, VARIABLES.index("running_sum")].tolist() == [1, 1, 3, 3, 3, 5, 5, 5]  # 3 * 4 mod 7 = 5


def test_correlation_selection_finds_a_latent_planted_to_track_m():
    layout = TokenLayout(seq_len=16, modulus=8, vocab_size=64, op="add", marker_scheme="indexed", readout="query")
    gen = torch.Generator().manual_seed(0)
    acc = CorrelationAccumulator(len(VARIABLES), 32, "cpu")
    all_h, all_v, all_d = [], [], []
    for m in (1, 2, 3, 4):  # chunks, one per m, as the probe feeds them
        batch = sample_batch(layout, m, 200, gen)
        values, defined = task_variables(layout, batch.tokens, batch.labels)
        h = torch.relu(torch.randn(len(values), 32, generator=gen))  # noise latents
        h[:, 17] = values[:, 0].float() + 0.3 * torch.rand(len(values), generator=gen)  # tracks m
        h[:, 5] = 0  # a dead latent has no correlation
        acc.add(h, values, defined)
        all_h.append(h), all_v.append(values), all_d.append(defined)
    corr = acc.result()
    latents, r = top_latents(corr, 3)[VARIABLES.index("m")]
    assert latents[0] == 17 and r[0] > 0.95
    assert torch.isnan(corr[:, 5]).all() and 5 not in torch.cat([idx for idx, _ in top_latents(corr, 3)])
    # against numpy, on the positions where a masked variable is defined
    h, values, defined = torch.cat(all_h), torch.cat(all_v), torch.cat(all_d)
    k = VARIABLES.index("value_token")
    rows = defined[:, k]
    expected = np.corrcoef(values[rows, k].numpy(), h[rows, 3].double().numpy())[0, 1]
    assert corr[k, 3].item() == pytest.approx(expected, abs=1e-9)


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override,key,allowed",
    [
        ("probe.checkpoint_fractions=[0.1,1.5]", "probe.checkpoint_fractions", "(0, 1]"),
        ("probe.checkpoint_steps=[10,99999]", "probe.checkpoint_steps", "0..6000"),
        ("probe.layer=2", "probe.layer", "0..1"),
        ("probe.sae_steps=0", "probe.sae_steps", "positive"),
        ("probe.sae_l1=-1", "probe.sae_l1", ">= 0"),
        ("probe.random_trials=-1", "probe.random_trials", ">= 0"),
    ],
)
def test_bad_probe_values_name_the_key_and_the_allowed_range(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(override))
    assert key in str(err.value) and allowed in str(err.value)


# --- checkpoints written by training -------------------------------------------------------------------


def test_training_keeps_self_describing_model_checkpoints_at_the_probe_steps(tmp_path):
    cfg = compose_config("experiment=smoke", "probe.checkpoint_fractions=[0.1,0.4,1.0]")
    train(cfg, tmp_path)
    assert saved_checkpoint_steps(tmp_path) == [4, 16, 40]
    payload = load_model_checkpoint(tmp_path, 40)
    assert payload["step"] == 40 and payload["shape"]["d_model"] == 16 and payload["config"]["seed"] == 0
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(payload["model"][k], final[k]) for k in final)
    assert not torch.equal(load_model_checkpoint(tmp_path, 4)["model"]["tok_emb"], final["tok_emb"])


def test_a_resumed_run_ends_with_every_model_checkpoint(tmp_path):
    cfg = compose_config("experiment=smoke", "probe.checkpoint_steps=[5,20,30,40]", "train.checkpoint_every=10")
    train(cfg, tmp_path / "whole")
    polls = {"n": 0}

    def stop_at_step_25():
        polls["n"] += 1
        return polls["n"] >= 26

    assert train(cfg, tmp_path / "split", should_stop=stop_at_step_25) == "interrupted"
    assert saved_checkpoint_steps(tmp_path / "split") == [5, 20]
    assert train(cfg, tmp_path / "split") == "completed"
    assert saved_checkpoint_steps(tmp_path / "split") == [5, 20, 30, 40]
    for step in (5, 20, 30, 40):
        whole, split = (load_model_checkpoint(tmp_path / r, step)["model"] for r in ("whole", "split"))
        assert all(torch.equal(whole[k], split[k]) for k in whole)



def test_runs_with_other_probe_settings_share_a_pack_and_keep_their_own_checkpoints(tmp_path):
    cfgs = [compose_config("experiment=smoke", "seed=0", "probe.checkpoint_steps=[5,40]"),
            compose_config("experiment=smoke", "seed=1", "probe.checkpoint_fractions=[0.5,1.0]", "probe.sae_l1=0.5")]
    assert form_packs(cfgs, 2) == [[0, 1]]
    assert train_pack(cfgs, [tmp_path / "a", tmp_path / "b"]) == ["completed", "completed"]
    assert saved_checkpoint_steps(tmp_path / "a") == [5, 40]
    assert saved_checkpoint_steps(tmp_path / "b") == [20, 40]


def test_a_finished_run_relaunched_with_other_sae_settings_is_pointed_to_the_probe_stage(tmp_path):
    train(compose_config("experiment=smoke"), tmp_path)
    with pytest.raises(ConfigError, match=r"differs in probe.sae_l1 \(1.0 -> 0.5\); probe settings other than "
                                          r"probe.checkpoint_\* are the probe stage's: python -m manifold_sweeps.probes "
                                          r".* probe.sae_l1=... --force"):
        train(compose_config("experiment=smoke", "probe.sae_l1=0.5"), tmp_path)
    with pytest.raises(ConfigError, match=r"differs in probe.checkpoint_fractions .*; use a new output directory"):
        train(compose_config("experiment=smoke", "probe.checkpoint_fractions=[0.5]"), tmp_path)

# --- tables, summary, claim and figure -------------------------------------------------------------------


def fake_rows(run_id, seed, drop, clean=1.0, random_drop=0.0, steps=(2, 8, 20)):
    rows = []
    for step in steps:
        for m in (1, 2):
            for group, ablation, acc in (("none", "clean", clean), ("none", "reconstruction", clean),
                                         ("all_task", "zero_selected", clean - drop),
                                         ("all_task", "zero_random", clean - random_drop)):
                rows.append({"run_id": run_id, "seed": seed, "step": step, "checkpoint_fraction": step / 20,
                             "layer": 0, "m": m, "latent_group": group, "ablation": ablation,
                             "n_ablated": 0 if group == "none" else 6, "accuracy": acc, "accuracy_drop": clean - acc,
                             "sae_r2": 0.9, "sae_l0": 12.0, "sae_dead_latents": 3})
    return pd.DataFrame(rows)


def test_the_summary_is_over_seeds_within_each_condition():
    rows = pd.concat([fake_rows("a", 0, 0.0), fake_rows("b", 1, 0.2), fake_rows("c", 0, 0.5)])
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "seed": [0, 1, 0], "task.m": [4, 4, 2]})
    summary = sae_probe_summary(rows, runs, ["task.m"])
    ablated = summary[(summary.ablation == "zero_selected") & (summary.step == 8) & (summary.m == 1)]
    four = ablated[ablated["task.m"] == 4].iloc[0]
    assert four.n_seeds == 2 and four.accuracy_mean == pytest.approx(0.9) and four.accuracy_drop_mean == pytest.approx(0.1)
    assert four.accuracy_sd == pytest.approx(np.std([1.0, 0.8], ddof=1))
    two = ablated[ablated["task.m"] == 2].iloc[0]
    assert two.n_seeds == 1 and two.accuracy_mean == pytest.approx(0.5)
    assert len(summary) == 2 * 3 * 4 * 2  # conditions x steps x (group, ablation) x m
    with pytest.raises(KeyError, match="model"):
        sae_probe_summary(rows, runs, ["model"])


@pytest.mark.parametrize(
    "drop,clean,random_drop,verdict",
    [
        (0.01, 1.0, 0.0, SUPPORTED),  # the paper's finding
        (0.5, 1.0, 0.0, NOT_SUPPORTED),  # the task latents carry the execution
        (0.01, 0.3, 0.0, NOT_TESTED),  # the model never learned: nothing to isolate
        (0.5, 1.0, 0.5, NOT_TESTED),  # random latents break it just as much: cannot tell
    ],
)
def test_the_claim_verdict_follows_the_numbers(drop, clean, random_drop, verdict):
    rows = pd.concat([fake_rows("a", 0, drop, clean, random_drop), fake_rows("b", 1, drop, clean, random_drop)])
    summary = sae_probe_summary(rows, pd.DataFrame({"run_id": ["a", "b"], "seed": [0, 1]}), [])
    result = sae_execution_claim(summary)
    assert result["verdict"] == verdict
    assert result["claim"] == "SAE latents do not isolate execution"
    assert f"ablated {clean - drop:.3f}" in result["evidence"] and len(result["checkpoints"]) == 3
    assert sae_execution_claim(summary.iloc[0:0])["verdict"] == NOT_TESTED


def test_the_figure_shows_every_checkpoint_and_ablation_with_sd_over_seeds(tmp_path):
    from manifold_sweeps.probes.figure import plot_sae_ablation

    rows = pd.concat([fake_rows("a", 0, 0.1), fake_rows("b", 1, 0.3)])
    grid = plot_sae_ablation(rows)
    ax = grid.axes.flat[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10% of training", "40% of training", "100% of training"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    assert heights.count(0.8) == 3  # the ablated bars: mean of 0.9 and 0.7 at each checkpoint
    assert len(ax.lines) >= 12  # one sd bar per bar
    grid.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0
    with pytest.raises(ValueError, match="present"):
        plot_sae_ablation(rows, latent_group="m")


def test_runs_probed_with_other_settings_are_never_averaged_together():
    """Two runs probed with probe.sae_l1=1.0, one re-probed with 0.5: pooled, the mean drop (0.04) would
    support the claim; apart, the re-probed run's drop of 0.12 refutes it."""
    default, reprobed = "layer=0, sae_l1=1.0, sae_steps=1000", "layer=0, sae_l1=0.5, sae_steps=1000"
    rows = pd.concat([fake_rows("a", 0, 0.0).assign(probe_settings=default),
                      fake_rows("b", 1, 0.0).assign(probe_settings=default),
                      fake_rows("c", 2, 0.12).assign(probe_settings=reprobed)])
    summary = sae_probe_summary(rows, pd.DataFrame({"run_id": ["a", "b", "c"], "seed": [0, 1, 2]}), [])
    result = sae_execution_claim(summary)
    assert result["verdict"] == NOT_SUPPORTED
    assert sorted(summary.n_seeds.unique()) == [1, 2]
    ablated = summary[(summary.ablation == "zero_selected") & (summary.step == 8) & (summary.m == 1)]
    ablated = ablated.set_index("probe_settings")
    assert ablated.loc[default, "n_seeds"] == 2 and ablated.loc[default, "accuracy_drop_mean"] == pytest.approx(0.0)
    assert ablated.loc[reprobed, "n_seeds"] == 1 and ablated.loc[reprobed, "accuracy_drop_mean"] == pytest.approx(0.12)
    assert len(summary) == 2 * 3 * 4 * 2  # settings x steps x (group, ablation) x m

    evidence = result["evidence"]
    assert "runs probed with 2 different settings (sae_l1=0.5; sae_l1=1.0)" in evidence
    assert "- probe sae_l1=1.0, step 8 (40%), 2 seed(s)" in evidence
    assert "- probe sae_l1=0.5, step 8 (40%), 1 seed(s)" in evidence and "3 seed(s)" not in evidence
    # one settings: named once in full, not on every line
    alone = sae_execution_claim(summary[summary.probe_settings == default])
    assert alone["verdict"] == SUPPORTED and f"probe settings: {default}" in alone["evidence"]
    assert "- step 8 (40%), 2 seed(s)" in alone["evidence"]


def test_the_figure_draws_each_probe_setting_apart():
    from manifold_sweeps.probes.figure import plot_sae_ablation

    rows = pd.concat([fake_rows("a", 0, 0.1).assign(probe_settings="sae_l1=1.0"),
                      fake_rows("b", 1, 0.3).assign(probe_settings="sae_l1=0.5")])
    grid = plot_sae_ablation(rows)
    assert grid.axes.shape == (2, 1)
    titles = [ax.get_title() for ax in grid.axes.flat]
    for ax, title in zip(grid.axes.flat, titles):
        ablated = 0.9 if "sae_l1=1.0" in title else 0.7  # each run's own value, not their mean 0.8
        heights = [round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0]
        assert heights.count(ablated) == 3
    assert sorted(t.split("sae_l1=")[1] for t in titles) == ["0.5", "1.0"]


def test_probe_settings_text_leaves_out_where_and_which_checkpoints():
    from manifold_sweeps.probes.tables import probe_settings_text, settings_labels

    meta = {"probe": {"sae_l1": 0.5, "layer": 0, "device": "cuda", "checkpoint_fractions": [0.5, 1.0],
                      "checkpoint_steps": None}}
    assert probe_settings_text(meta) == "layer=0, sae_l1=0.5"
    assert probe_settings_text({"format": 1}) is None
    labels = settings_labels(pd.Series(["layer=0, sae_l1=0.5", "layer=0, sae_l1=1.0", None], dtype="string"))
    assert list(labels) == ["sae_l1=0.5", "sae_l1=1.0", "unknown"]


# --- the probe stage end to end ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_probe_stage_writes_the_tables_of_a_smoke_sweep(tmp_path, capsys):
    from manifold_sweeps.probes.__main__ import main

    for seed in (0, 1):
        train(compose_config("experiment=smoke", f"seed={seed}"), tmp_path / "sweep" / f"seed={seed}")
    (tmp_path / "sweep" / "broken").mkdir()
    (tmp_path / "sweep" / "broken" / "status.json").write_text('{"state": "failed"}')
    assert main([str(tmp_path / "sweep")]) == 0

    run = tmp_path / "sweep" / "seed=0"
    rows = load_sae_probes(run)
    groups = set(rows.latent_group)
    assert {"none", "all_task", "is_readout", "is_marker"} <= groups
    assert set(rows.step) == {20, 40} and set(rows.m) == {1, 2}
    per_checkpoint = rows[(rows.step == 20) & (rows.m == 1)]
    assert len(per_checkpoint) == 2 + 2 * (len(groups) - 1)  # clean, reconstruction; selected and random per group
    assert rows.accuracy.between(0, 1).all() and rows.sae_r2.between(0, 1).all()
    assert (rows[rows.ablation == "zero_random"].n_trials == 2).all()
    # the clean accuracy is the run's own evaluation at that step: same examples, same model
    metrics = load_metrics(run)
    for step in (20, 40):
        for m in (1, 2):
            logged = metrics[(metrics.metric == "eval_accuracy") & (metrics.step == step) & (metrics.m == m)].value
            clean = rows[(rows.ablation == "clean") & (rows.step == step) & (rows.m == m)].accuracy
            assert clean.item() == pytest.approx(logged.item())
    latents = load_sae_latents(run)
    assert set(latents.variable) <= set(VARIABLES) and (latents.correlation.abs() <= 1).all()
    assert len(list((run / "probes").glob("sae_step_*.pt"))) == 2

    # up to date: not recomputed; a probe override recomputes
    before = (run / "probes" / "sae_probes.parquet").stat().st_mtime_ns
    assert probe_run(run).state == "up_to_date"
    assert probe_run(run, ["probe.device=cpu"]).state == "up_to_date"  # where, not what, was computed
    assert (run / "probes" / "sae_probes.parquet").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="probe.KEY=VALUE"):
        probe_run(run, ["train.steps=3"])
    # same config and seed, same tables (every draw comes from the run's named streams)
    assert probe_run(run, force=True).state == "probed"
    pd.testing.assert_frame_equal(load_sae_probes(run), rows)

    # the aggregation's entry points
    both = pd.concat([sae_probe_rows(tmp_path / "sweep" / f"seed={s}", run_id=f"r{s}") for s in (0, 1)])
    assert sae_probe_rows(tmp_path / "sweep" / "broken").empty
    summary = sae_probe_summary(both, pd.DataFrame({"run_id": ["r0", "r1"], "seed": [0, 1]}), [])
    assert (summary.n_seeds == 2).all()
    assert sae_execution_claim(summary)["verdict"] == NOT_TESTED  # the smoke model learns nothing

    assert probe_run(run, ["probe.random_trials=1"]).state == "probed"  # new settings: recomputed
    assert (load_sae_probes(run).query("ablation == 'zero_random'").n_trials == 1).all()
    # one run of a sweep by its path, which holds "=" like an override does, with an override
    assert main([str(run), "probe.random_trials=2"]) == 0
    assert (load_sae_probes(run).query("ablation == 'zero_random'").n_trials == 2).all()
    with pytest.raises(SystemExit):  # neither a directory nor a probe override
        main([str(run), "seed=4"])
    # bad overrides are refused before any run is touched, naming the override
    meta = (run / "probes" / "probe.json").read_bytes()
    for override, message in (("probe.foo=1", "probe.foo=1 is not allowed"),
                              ("probe.device=gpu", "expected one of [auto, cpu, cuda]"),
                              ("probe.device=cuda", "probe.device=cuda is not available"),
                              # training's keys: the stage probes every saved checkpoint, it would only record them
                              ("probe.checkpoint_steps=[10]", "probe.checkpoint_steps=[10] is not allowed in the "
                                                              "probe stage")):
        if override == "probe.device=cuda" and torch.cuda.is_available():
            continue
        with pytest.raises(SystemExit):
            main([str(tmp_path / "sweep"), override])
        assert message in capsys.readouterr().err
    # ranges depend on the run (a 5-layer run takes probe.layer=3): checked per run, still before touching it
    check_overrides(["probe.layer=3"])
    assert main([str(run), "probe.layer=3"]) == 2
    assert "probe.layer=3 is not allowed; allowed: 0..1" in capsys.readouterr().err
    assert (run / "probes" / "probe.json").read_bytes() == meta
