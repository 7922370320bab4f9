"""The claims' verdicts follow from the tables: each claim on tables built to make it true, false, and untestable."""

import pandas as pd
import pytest

from manifold_sweeps.report import claims
from manifold_sweeps.report.claims import Outcome

from .report_tables import (
    alignment_table, commutators_table, effective_rank_table, full_sweep, metrics_table, report_data, runs_table,
)

SUPPORTED, NOT_SUPPORTED, NOT_TESTED = Outcome.supported, Outcome.not_supported, Outcome.not_tested
M_SWEEP = [{"task.m": 1}, {"task.m": 2}]


def rank_data(r90, expanding=None, accuracy=0.95, conditions=M_SWEEP, seeds=(0, 1, 2), snapshots=101, **tables):
    runs = runs_table(conditions, seeds=seeds, accuracy=accuracy)
    er = effective_rank_table(runs, r90, expanding, snapshots=snapshots)
    return report_data(runs, effective_rank=er, **{k: f(runs) for k, f in tables.items()})


def by_matrix(values: dict):
    return lambda run, layer, matrix: values[matrix]


def test_r90_in_range():
    inside = rank_data(by_matrix({"W_Q": 5, "W_K": 4, "W_V": 3, "W_O": 3}))
    assert claims.r90_in_range(inside).outcome is SUPPORTED
    outside = rank_data(lambda run, layer, matrix: 8 if layer == 1 and matrix == "W_Q" else 4)
    verdict = claims.r90_in_range(outside)
    assert verdict.outcome is NOT_SUPPORTED and "8.0" in verdict.evidence
    assert claims.r90_in_range(report_data(runs_table(M_SWEEP))).outcome is NOT_TESTED


def test_r90_in_range_uses_only_the_main_setting():
    # MLP models far outside 3-5 do not count against a claim about attention-only models ...
    runs = runs_table([{"model": "attention_only", "model.mlp_ratio": 0}, {"model": "standard", "model.mlp_ratio": 4}])
    er = effective_rank_table(runs, lambda run, layer, matrix: 4 if run["model.mlp_ratio"] == 0 else 12)
    assert claims.r90_in_range(report_data(runs, effective_rank=er)).outcome is SUPPORTED
    # ... and a sweep of MLP models alone cannot test it.
    mlp = runs_table([{"model": "standard", "model.mlp_ratio": 4}])
    er = effective_rank_table(mlp, lambda run, layer, matrix: 4)
    assert claims.r90_in_range(report_data(mlp, effective_rank=er)).outcome is NOT_TESTED


def test_claims_about_trained_models_are_not_tested_on_runs_that_never_learned():
    untrained = rank_data(by_matrix({"W_Q": 4, "W_K": 4, "W_V": 3, "W_O": 3}), accuracy=0.12)
    verdict = claims.r90_in_range(untrained)
    assert verdict.outcome is NOT_TESTED
    assert "did not learn" in verdict.evidence and "0.12" in verdict.evidence and verdict.needed


def test_claims_about_trained_models_leave_out_the_conditions_that_did_not_learn():
    runs = runs_table(M_SWEEP)
    runs.loc[runs["task.m"] == 2, "final_accuracy_m2"] = 0.15
    # The m=2 runs, which learned nothing, are far outside 3-5; the verdict rests on m=1 alone.
    er = effective_rank_table(runs, lambda run, layer, matrix: 4 if run["task.m"] == 1 else 9)
    verdict = claims.r90_in_range(report_data(runs, effective_rank=er))
    assert verdict.outcome is SUPPORTED
    assert "1 of 2 condition(s) left out" in verdict.evidence and "task.m=2" in verdict.evidence


def test_vo_below_qk():
    assert claims.vo_below_qk(rank_data(by_matrix({"W_Q": 5, "W_K": 4, "W_V": 3, "W_O": 3}))).outcome is SUPPORTED
    assert claims.vo_below_qk(rank_data(by_matrix({"W_Q": 3, "W_K": 3, "W_V": 4, "W_O": 3}))).outcome is NOT_SUPPORTED
    # Consistently: one layer where V/O are not lower is enough to fail.
    one_layer = rank_data(lambda run, layer, matrix: 4 if matrix in ("W_Q", "W_K") or layer == 1 else 3)
    assert claims.vo_below_qk(one_layer).outcome is NOT_SUPPORTED
    assert claims.vo_below_qk(report_data(runs_table(M_SWEEP))).outcome is NOT_TESTED


def test_seeds_share_the_dimension_but_not_the_orientation():
    def data(r90, cos2):
        return rank_data(r90, subspace_alignment=lambda runs: alignment_table(runs, ["task.m"], lambda layer, matrix: cos2))

    steady = lambda run, layer, matrix: 4  # noqa: E731
    assert claims.seeds_dimension_not_orientation(data(steady, 0.01)).outcome is SUPPORTED
    aligned = claims.seeds_dimension_not_orientation(data(steady, 0.9))
    assert aligned.outcome is NOT_SUPPORTED and "share their orientation" in aligned.evidence
    scattered = claims.seeds_dimension_not_orientation(data(lambda run, layer, matrix: 2 + 3 * run["seed"], 0.01))
    assert scattered.outcome is NOT_SUPPORTED and "dimension varies" in scattered.evidence
    # One seed per condition, or no alignment table: nothing to compare.
    one_seed = rank_data(steady, seeds=(0,))
    assert claims.seeds_dimension_not_orientation(one_seed).outcome is NOT_TESTED
    assert claims.seeds_dimension_not_orientation(rank_data(steady)).outcome is NOT_TESTED


def test_collapse_within_the_first_30_percent():
    def grows_until(settle):
        return lambda run, layer, matrix, fraction: 4 if fraction >= settle - 1e-9 else 1

    final = lambda run, layer, matrix: 4  # noqa: E731
    early = claims.collapse_early(rank_data(final, grows_until(0.2)))
    assert early.outcome is SUPPORTED and "latest 20%" in early.evidence
    late = claims.collapse_early(rank_data(final, grows_until(0.6)))
    assert late.outcome is NOT_SUPPORTED and "latest 60%" in late.evidence
    # With 11 snapshots the 30% window holds 4: r90 could not exceed 3, so the timing is not resolved.
    sparse = claims.collapse_early(rank_data(final, grows_until(0.2), snapshots=11))
    assert sparse.outcome is NOT_TESTED and "too few snapshots" in sparse.evidence


def test_attention_entropy_falls():
    def data(entropy):
        runs = runs_table(M_SWEEP)
        return report_data(runs, metrics=metrics_table(runs, entropy, lambda run, step, m: 0.95))

    assert claims.entropy_falls(data(lambda run, step, m, layer: 2.5 - step / 1000)).outcome is SUPPORTED
    flat = claims.entropy_falls(data(lambda run, step, m, layer: 2.5 - step / 100000))
    assert flat.outcome is NOT_SUPPORTED
    # Only the last layer counts (the paper's): a falling first layer does not make it true.
    first_only = data(lambda run, step, m, layer: 2.5 - step / 1000 if layer == 0 else 2.5)
    assert claims.entropy_falls(first_only).outcome is NOT_SUPPORTED
    assert claims.entropy_falls(report_data(runs_table(M_SWEEP))).outcome is NOT_TESTED


def commutator_data(outside=0.97, ratio=lambda run, step: 6 - step / 250):
    runs = runs_table(M_SWEEP)
    return report_data(runs, commutators=commutators_table(runs, lambda run, step: outside, ratio))


def test_commutator_energy_outside_the_execution_subspace():
    assert claims.commutator_energy_outside(commutator_data(outside=0.97)).outcome is SUPPORTED
    verdict = claims.commutator_energy_outside(commutator_data(outside=0.80))
    assert verdict.outcome is NOT_SUPPORTED and "80.0%" in verdict.evidence
    absent = claims.commutator_energy_outside(report_data(runs_table(M_SWEEP)))
    assert absent.outcome is NOT_TESTED and "commutator.every" in absent.needed


def test_execution_subspace_beats_random_more_so_early():
    assert claims.exec_beats_random_early(commutator_data()).outcome is SUPPORTED
    rising = claims.exec_beats_random_early(commutator_data(ratio=lambda run, step: 2 + step / 250))
    assert rising.outcome is NOT_SUPPORTED and "early ratio is not above the late one" in rising.evidence
    random_like = claims.exec_beats_random_early(commutator_data(ratio=lambda run, step: 0.9 + (1000 - step) / 1e4))
    assert random_like.outcome is NOT_SUPPORTED and "not above 1" in random_like.evidence
    assert claims.exec_beats_random_early(report_data(runs_table(M_SWEEP))).outcome is NOT_TESTED


def variant_data(conditions, r90):
    runs = runs_table(conditions)
    return report_data(runs, effective_rank=effective_rank_table(runs, r90))


MODELS = [{"model": "attention_only", "model.mlp_ratio": 0, "task.m": m} for m in (1, 2)] + \
         [{"model": "standard", "model.mlp_ratio": 4, "task.m": m} for m in (1, 2)]


def test_mlp_models_are_higher_dimensional():
    higher = variant_data(MODELS, lambda run, layer, matrix: 7 if run["model.mlp_ratio"] else 4)
    verdict = claims.mlp_higher_dimensional(higher)
    assert verdict.outcome is SUPPORTED and "2 matched group(s)" in verdict.evidence
    same = variant_data(MODELS, lambda run, layer, matrix: 4)
    assert claims.mlp_higher_dimensional(same).outcome is NOT_SUPPORTED
    # Higher only at m=2: not in every matched group.
    mixed = variant_data(MODELS, lambda run, layer, matrix: 7 if run["model.mlp_ratio"] and run["task.m"] == 2 else 4)
    assert claims.mlp_higher_dimensional(mixed).outcome is NOT_SUPPORTED
    assert claims.mlp_higher_dimensional(variant_data(M_SWEEP, lambda *a: 4)).outcome is NOT_TESTED


def test_mlp_comparison_needs_runs_that_share_the_other_conditions():
    # MLP runs at m=1 and attention-only runs at m=2 only: confounded, so not tested.
    confounded = variant_data([MODELS[0] | {"task.m": 2}, MODELS[2] | {"task.m": 1}],
                              lambda run, layer, matrix: 7 if run["model.mlp_ratio"] else 4)
    assert claims.mlp_higher_dimensional(confounded).outcome is NOT_TESTED


def test_variant_comparisons_count_only_groups_in_which_both_variants_learned():
    r90 = lambda run, layer, matrix: 7 if run["model.mlp_ratio"] else 4  # noqa: E731
    # Models that learned nothing have no execution geometry to compare: not tested, saying why.
    untrained = runs_table(MODELS, accuracy=0.12)
    verdict = claims.mlp_higher_dimensional(report_data(untrained, effective_rank=effective_rank_table(untrained, r90)))
    assert verdict.outcome is NOT_TESTED and "did not learn" in verdict.evidence and "learn the task" in verdict.needed
    # At m=2 the MLP runs did not learn, and there they look lower-dimensional: that group is left out.
    runs = runs_table(MODELS)
    runs.loc[(runs["model.mlp_ratio"] == 4) & (runs["task.m"] == 2), "final_accuracy_m2"] = 0.15
    er = effective_rank_table(runs, lambda run, layer, matrix: 2 if run["model.mlp_ratio"] and run["task.m"] == 2
                              else r90(run, layer, matrix))
    verdict = claims.mlp_higher_dimensional(report_data(runs, effective_rank=er))
    assert verdict.outcome is SUPPORTED
    assert "1 of 2 matched group(s) left out" in verdict.evidence and "task.m=2" in verdict.evidence


def test_multiplication_needs_more_dimensions():
    ops = [{"task": "modadd", "task.op": "add", "task.modulus": 8}, {"task": "modmul", "task.op": "mul", "task.modulus": 7}]
    assert claims.mul_higher_dimensional(variant_data(ops, lambda run, layer, matrix: 6 if run["task.op"] == "mul" else 4)).outcome is SUPPORTED
    assert claims.mul_higher_dimensional(variant_data(ops, lambda run, layer, matrix: 3 if run["task.op"] == "mul" else 4)).outcome is NOT_SUPPORTED
    assert claims.mul_higher_dimensional(variant_data(ops[:1], lambda *a: 4)).outcome is NOT_TESTED


CURRICULA = [{"curriculum": "sequential", "curriculum.kind": "sequential", "curriculum.ms": "[1, 2, 3]"},
             {"curriculum": "mixed", "curriculum.kind": "mixed", "curriculum.ms": "[1, 2, 3]"}]


def curriculum_data(conditions, accuracy):
    runs = runs_table(conditions)
    return report_data(runs, metrics=metrics_table(runs, lambda *a: 2.0, accuracy))


def learns_then_forgets(run, step, m):
    """Sequential: m is learned during its stage (m-1)/3..m/3 of training and lost afterwards; mixed: all learned."""
    if run["curriculum.kind"] == "mixed":
        return min(1.0, 0.2 + step / 500)
    stage_end = 1000 * m / 3
    return 0.95 if stage_end - 300 <= step <= stage_end else (0.2 if step < stage_end else 0.3)


def test_sequential_curricula_forget_and_mixed_ones_do_not():
    verdict = claims.sequential_forgets(curriculum_data(CURRICULA, learns_then_forgets))
    assert verdict.outcome is SUPPORTED, verdict
    assert "0.65" in verdict.evidence  # peak 0.95 -> final 0.30 for m = 1 and 2


def test_forgetting_claim_fails_when_sequential_keeps_its_early_m():
    keeps = claims.sequential_forgets(curriculum_data(CURRICULA, lambda run, step, m: min(1.0, 0.2 + step / 500)))
    assert keeps.outcome is NOT_SUPPORTED


def test_forgetting_claim_fails_when_mixed_training_forgets_too():
    def both_forget(run, step, m):
        return learns_then_forgets(run.copy().replace("mixed", "sequential"), step, m)

    assert claims.sequential_forgets(curriculum_data(CURRICULA, both_forget)).outcome is NOT_SUPPORTED


def test_forgetting_claim_is_not_tested_without_mixed_runs_or_learning():
    seq_only = claims.sequential_forgets(curriculum_data(CURRICULA[:1], learns_then_forgets))
    assert seq_only.outcome is NOT_TESTED and "no mixed runs" in seq_only.evidence
    never_learned = claims.sequential_forgets(curriculum_data(CURRICULA, lambda run, step, m: 0.15))
    assert never_learned.outcome is NOT_TESTED
    assert claims.sequential_forgets(curriculum_data(M_SWEEP, learns_then_forgets)).outcome is NOT_TESTED


def test_sae_claim_is_not_tested_without_probe_results():
    verdict = claims.sae_does_not_isolate_execution(full_sweep())
    assert verdict.outcome is NOT_TESTED and "manifold_sweeps.probes" in verdict.needed


def sae_probes_table(runs, drop, settings):
    """sae_probes rows of a model at 100% accuracy, drop(run) when the task latents are zeroed."""
    rows = []
    for _, run in runs.iterrows():
        for step in (100, 1000):
            for ablation, group, accuracy in (("clean", "none", 1.0), ("reconstruction", "none", 1.0),
                                              ("zero_selected", "all_task", 1.0 - drop(run)),
                                              ("zero_random", "all_task", 1.0)):
                rows.append({"run_id": run["run_id"], "probe_settings": settings(run), "seed": run["seed"],
                             "step": step, "checkpoint_fraction": step / 1000, "layer": 0, "m": 2,
                             "latent_group": group, "ablation": ablation, "n_ablated": 6, "accuracy": accuracy,
                             "accuracy_drop": 1.0 - accuracy, "sae_r2": 0.9, "sae_l0": 10.0, "sae_dead_latents": 0})
    return pd.DataFrame(rows)


def test_sae_claim_decides_each_probe_setting_apart():
    runs = runs_table([{}], seeds=(0, 1, 2))
    # seed 2 re-probed with probe.sae_l1=0.5
    probes = sae_probes_table(runs, lambda run: 0.12 if run["seed"] == 2 else 0.0,
                              lambda run: "sae_l1=0.5" if run["seed"] == 2 else "sae_l1=1.0")
    verdict = claims.sae_does_not_isolate_execution(report_data(runs, sae_probes=probes))
    # pooled, the mean drop of 0.04 would support it
    assert verdict.outcome is NOT_SUPPORTED, verdict
    assert "probe sae_l1=1.0, step 1000 (100%), 2 seed(s)" in verdict.evidence
    assert "probe sae_l1=0.5, step 1000 (100%), 1 seed(s)" in verdict.evidence
    assert "3 seed(s)" not in verdict.evidence and "decided on separately" in verdict.rule
    same = sae_probes_table(runs, lambda run: 0.0, lambda run: "sae_l1=1.0")
    verdict = claims.sae_does_not_isolate_execution(report_data(runs, sae_probes=same))
    assert verdict.outcome is SUPPORTED and "3 seed(s)" in verdict.evidence


@pytest.fixture(scope="module")
def sweeps():
    return full_sweep(), report_data(runs_table(M_SWEEP))


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: c.__name__)
def test_every_verdict_names_its_rule_and_what_is_needed_when_not_tested(claim, sweeps):
    for data in sweeps:
        verdict = claim(data)
        assert verdict.rule and verdict.claim and verdict.evidence
        assert verdict.outcome in Outcome
        if verdict.outcome is NOT_TESTED:
            assert verdict.needed

