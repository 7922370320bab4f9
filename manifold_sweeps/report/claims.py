"""The paper's claims, each decided from this sweep's tables by a pure function with explicit thresholds.

Every function takes the ReportData and returns a Verdict: "supported", "not supported" or "not
tested by this sweep", with the numbers behind it, the rule it applied, and what would be needed
when the sweep cannot decide. A verdict never says more than the data shows: a claim about the
paper's main setting (attention-only models on modular addition) is tested on those runs alone,
and a comparison only between runs that share every other condition.

Means and sds are over the seeds of a condition (a condition = one combination of the config values
that vary across the sweep, seed aside).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
import pandas as pd

from .data import MLP_KEYS, OP_KEYS, ReportData, mlp_variant, op_variant

# --- thresholds (also stated in each verdict's rule and in the README) -----------------------------
R90_RANGE = (3, 5)  # paper body and Fig. 1
R90_ABSTRACT = (3, 4)  # paper abstract
SEED_SD_MAX = 1.0  # "dimension consistent across seeds": sd of r90 over seeds at most one dimension
OVERLAP_MAX = 0.5  # "orientation varies": normalised overlap (0 = random, 1 = identical) below one half
COLLAPSE_BY = 0.30  # "collapse within the first 20-30% of training"
COLLAPSE_TOLERANCE = 1.0  # r90 of a window "has settled" when within one dimension of the final r90
ENTROPY_DROP = 0.10  # "entropy falls": final at least 10% below its value at step 0
OUTSIDE_ENERGY_MIN = 0.92  # "more than 92% of commutator energy lies outside the execution subspace"
PHASE = 0.20  # early / late = a run's first / last 20% of measurements (at least one)
FORGETTING_DROP = 0.10  # forgetting: accuracy of an earlier m falls 10 points below its peak
LEARNED_ACCURACY = 0.5  # an m counts as learned once its accuracy reached 50% (chance is 1/C <= 1/2)
EPS = 1e-9


class Outcome(Enum):
    supported = "supported"
    not_supported = "not supported"
    not_tested = "not tested by this sweep"


@dataclass(frozen=True)
class Verdict:
    claim: str  # the paper's claim
    source: str  # where the paper makes it
    outcome: Outcome
    evidence: str  # the numbers behind the verdict
    rule: str  # how the verdict is decided, with its thresholds
    needed: str = ""  # what would decide (or strengthen) it

    @property
    def verdict(self) -> str:
        return self.outcome.value


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _span(values: pd.Series, fmt: str = ".2f") -> str:
    """'0.62 to 0.68' over the values, or the one value when they agree."""
    lo, hi = format(values.min(), fmt), format(values.max(), fmt)
    return lo if lo == hi else f"{lo} to {hi}"


def _seed_means(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """mean, sd and n over the runs (seeds) of each group of `keys`."""
    return frame.groupby(keys, dropna=False)[value].agg(mean="mean", sd="std", n="count").reset_index()


def _unless_a_part_fails(claim: str, source: str, evidence: str, rule: str, parts: list[tuple[str, bool]]) -> Verdict:
    """Supported when every part holds; otherwise not supported, naming the parts that fail."""
    failed = [why for why, holds in parts if not holds]
    if not failed:
        return Verdict(claim, source, Outcome.supported, evidence, rule)
    return Verdict(claim, source, Outcome.not_supported, f"{evidence} Fails because {' and '.join(failed)}.", rule)


def _whole_r90(data: ReportData, runs: pd.DataFrame) -> pd.DataFrame:
    er = data.per_run("effective_rank", runs)
    if er.empty:
        return er
    er = er[er["window"] == "whole"].dropna(subset=["r90"])
    return er.assign(r90=er["r90"].astype("float64"))


MAIN = "attention-only models on modular addition"


def final_accuracy(runs: pd.DataFrame) -> pd.Series:
    """Each run's final held-out accuracy averaged over its m (NaN when the runs table has none)."""
    columns = [c for c in runs.columns if re.fullmatch(r"final_accuracy_m\d+", c)]
    return runs[columns].astype("float64").mean(axis=1) if columns else pd.Series(np.nan, index=runs.index)


def trained_main_runs(data: ReportData) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(the main setting's runs, those of its conditions that learned the task, a note on the others).

    A condition learned the task when its seed-mean final accuracy reaches LEARNED_ACCURACY (or is
    unknown); the paper's claims about training dynamics are about models that learn.
    """
    runs = data.main_setting()
    by_condition = final_accuracy(runs).groupby(runs["condition"]).mean()
    untrained = by_condition[by_condition < LEARNED_ACCURACY]
    if untrained.empty:
        return runs, runs, ""
    names = ", ".join(untrained.index[:3]) + (", ..." if len(untrained) > 3 else "")
    note = (f"{len(untrained)} of {len(by_condition)} condition(s) left out because their runs did not learn the task "
            f"(seed-mean final accuracy {_span(untrained)} < {LEARNED_ACCURACY:.2f}): {names}.")
    return runs, runs[~runs["condition"].isin(untrained.index)], note


def about_trained_models(claim: Callable[[ReportData, pd.DataFrame], Verdict]) -> Callable[[ReportData], Verdict]:
    """A claim about models that learn the task, tested on the main setting's conditions that did.

    The claim sees those runs only, and its evidence says which conditions were left out. When none
    learned, the verdict on all of them becomes "not tested", keeping its numbers.
    """

    @functools.wraps(claim)
    def checked(data: ReportData) -> Verdict:
        runs, trained, note = trained_main_runs(data)
        if not note:
            return claim(data, runs)
        if trained.empty:
            verdict = claim(data, runs)
            if verdict.outcome is Outcome.not_tested:
                return verdict
            return dataclasses.replace(
                verdict, outcome=Outcome.not_tested,
                evidence=f"{verdict.evidence} But no condition learned the task: {note}",
                needed="runs that learn the task (more train.steps, or a tuned preset such as experiment=demo)",
            )
        verdict = claim(data, trained)
        return dataclasses.replace(verdict, evidence=f"{verdict.evidence} {note}")

    return checked


NEED_MAIN = "completed attention-only runs on addition (model=attention_only task=modadd), aggregated"


# --- 1. r90 in 3-5 ---------------------------------------------------------------------------------

@about_trained_models
def r90_in_range(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "The attention matrices' r90 lies in 3-5 (abstract: 3-4)."
    rule = (f"Supported when the seed-mean whole-trajectory r90 of every layer and matrix of every condition of {MAIN} "
            f"lies in [{R90_RANGE[0]}, {R90_RANGE[1]}].")
    er = _whole_r90(data, runs)
    if er.empty:
        return Verdict(claim, "abstract; section 4.1; Fig. 1", Outcome.not_tested, f"no effective-rank data for {MAIN}.", rule, NEED_MAIN)
    cells = _seed_means(er, ["condition", "layer", "matrix"], "r90")
    means = cells["mean"]
    inside = means.between(*R90_RANGE)
    abstract = means.between(*R90_ABSTRACT)
    evidence = (f"seed-mean r90 of {len(cells)} layer x matrix x condition cells ({er['run_id'].nunique()} runs) "
                f"is {_span(means, '.1f')} (overall mean {_f(means.mean(), 1)}); "
                f"{inside.mean():.0%} lie in 3-5 and {abstract.mean():.0%} in 3-4.")
    outcome = Outcome.supported if inside.all() else Outcome.not_supported
    return Verdict(claim, "abstract; section 4.1; Fig. 1", outcome, evidence, rule)


# --- 2. W_V, W_O below W_Q, W_K --------------------------------------------------------------------

@about_trained_models
def vo_below_qk(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "W_V and W_O are lower-dimensional than W_Q and W_K."
    source = "section 4.1; Fig. 1"
    rule = (f"Per run and layer, d = mean r90 of (W_Q, W_K) - mean r90 of (W_V, W_O); supported when the seed-mean d "
            f"is above 0 in every layer of every condition of {MAIN}.")
    er = _whole_r90(data, runs)
    if er.empty:
        return Verdict(claim, source, Outcome.not_tested, f"no effective-rank data for {MAIN}.", rule, NEED_MAIN)
    er = er.assign(pair=np.where(er["matrix"].isin(["W_Q", "W_K"]), "qk", "vo"))
    wide = er.pivot_table(index=["run_id", "layer"], columns="pair", values="r90", aggfunc="mean").reset_index()
    if not {"qk", "vo"} <= set(wide.columns):
        return Verdict(claim, source, Outcome.not_tested, "the table lacks one of the two matrix pairs.", rule, NEED_MAIN)
    wide = wide.assign(d=wide["qk"] - wide["vo"]).merge(runs[["run_id", "condition"]], on="run_id")
    cells = _seed_means(wide, ["condition", "layer"], "d")
    holds = cells["mean"] > 0
    evidence = (f"mean r90 of W_Q, W_K {_f(wide['qk'].mean(), 1)} vs W_V, W_O {_f(wide['vo'].mean(), 1)}; "
                f"the seed-mean difference is positive in {int(holds.sum())} of {len(cells)} layer x condition cells "
                f"(difference {_span(cells['mean'])}).")
    return Verdict(claim, source, Outcome.supported if holds.all() else Outcome.not_supported, evidence, rule)


# --- 3. dimension consistent across seeds, orientation not -----------------------------------------

@about_trained_models
def seeds_dimension_not_orientation(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "The dimension is consistent across seeds while the orientation of the subspace is not."
    source = "abstract; section 4.1"
    rule = (f"Dimension: the sd over seeds of the whole-trajectory r90 is at most {SEED_SD_MAX:g} in every layer x matrix x "
            f"condition with 2 or more seeds. Orientation: for each pair of seeds, overlap = (mean cos^2 - random) / "
            f"(1 - random), from subspace_alignment's mean squared cosine of the principal angles and its expectation "
            f"for random subspaces (0: as unrelated as random subspaces, 1: identical); it varies when the mean overlap "
            f"over pairs, layers and matrices is below {OVERLAP_MAX:g}. Supported when both hold, on {MAIN}.")
    needed = "2 or more completed seeds per condition ('seed=range(5)'), aggregated with subspace_alignment"
    er = _whole_r90(data, runs)
    cells = _seed_means(er, ["condition", "layer", "matrix"], "r90") if not er.empty else pd.DataFrame()
    if cells.empty or not (cells["n"] >= 2).any():
        return Verdict(claim, source, Outcome.not_tested, f"no condition of {MAIN} has 2 completed seeds.", rule, needed)
    cells = cells[cells["n"] >= 2]
    max_sd = float(cells["sd"].max())
    consistent = max_sd <= SEED_SD_MAX + EPS
    dimension = f"sd of r90 over seeds: median {_f(cells['sd'].median())}, max {_f(max_sd)} over {len(cells)} cells"
    pairs = pd.DataFrame()
    if data.has("subspace_alignment"):
        pairs = data.join_runs(data.tables["subspace_alignment"], runs, on="run_id_a")
    if pairs.empty:
        return Verdict(claim, source, Outcome.not_tested, f"{dimension}; no subspace_alignment rows for these runs.", rule, needed)
    random = pairs["random_expectation"]
    overlap = (pairs["mean_squared_cosine"] - random) / (1 - random)
    varies = overlap.mean() < OVERLAP_MAX
    orientation = (f"mean cos^2 between seeds' subspaces {pairs['mean_squared_cosine'].mean():.3g} "
                   f"(random subspaces: {random.mean():.3g}), mean overlap {_f(overlap.mean())} "
                   f"over {len(pairs)} pairs x layers x matrices")
    return _unless_a_part_fails(claim, source, f"{dimension}; {orientation}.", rule, [
        ("the dimension varies across seeds", consistent), ("the seeds share their orientation", varies)])


# --- 4. collapse within the first 20-30% of training -----------------------------------------------

def _settling_point(ends: np.ndarray, r90: np.ndarray, final: float) -> float:
    """The earliest window end (ascending `ends`) from which r90 stays within COLLAPSE_TOLERANCE of `final`."""
    off = np.abs(r90 - final) > COLLAPSE_TOLERANCE + EPS
    # The window after the last one still off; the last window is the whole run, never off.
    return float(ends[np.flatnonzero(off)[-1] + 1]) if off.any() else float(ends[0])


@about_trained_models
def collapse_early(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "The trajectory collapses onto its low dimension within the first 20-30% of training."
    source = "section 4.1"
    rule = (f"From the expanding windows (trajectory up to 10%, 20%, ... of training): per layer x matrix x condition of "
            f"{MAIN}, the settling point is the earliest window from which the seed-mean r90 stays within "
            f"{COLLAPSE_TOLERANCE:g} of its value over the whole run. Supported when every settling point is at or before "
            f"{COLLAPSE_BY:.0%}. The sweep can decide only when the windows up to {COLLAPSE_BY:.0%} hold enough snapshots "
            "for r90 to exceed the final value (final r90 + 2).")
    needed = "snapshots dense enough early on (smaller train.snapshot_every) and expanding windows (aggregate --expanding-windows 10)"
    er = data.per_run("effective_rank", runs)
    if er.empty:
        return Verdict(claim, source, Outcome.not_tested, f"no effective-rank data for {MAIN}.", rule, NEED_MAIN)
    er = er[er["window"] == "expanding"].dropna(subset=["r90"])
    er = er.assign(r90=er["r90"].astype("float64"))
    keys = ["condition", "layer", "matrix"]
    curve = er.groupby([*keys, "window_end_fraction"]).agg(
        r90=("r90", "mean"), n_snapshots=("n_snapshots", "min")).reset_index()
    settled, resolvable = [], []
    for _, cell in curve.groupby(keys):
        cell = cell.sort_values("window_end_fraction")
        final = cell["r90"].iloc[-1]
        if cell["window_end_fraction"].iloc[-1] < 1 - EPS:
            continue  # no window covers the whole run
        settle = _settling_point(cell["window_end_fraction"].to_numpy(), cell["r90"].to_numpy(), final)
        early = cell[cell["window_end_fraction"] <= COLLAPSE_BY + EPS]
        settled.append(settle)
        resolvable.append(not early.empty and early["n_snapshots"].max() >= final + 2)
    if not settled:
        return Verdict(claim, source, Outcome.not_tested, "no expanding windows reach the end of training.", rule, needed)
    settled = np.array(settled)
    evidence = (f"settling point over {len(settled)} layer x matrix x condition cells: median {np.median(settled):.0%}, "
                f"latest {settled.max():.0%}; {np.mean(settled <= COLLAPSE_BY + EPS):.0%} settle by {COLLAPSE_BY:.0%}.")
    if not all(resolvable):
        return Verdict(claim, source, Outcome.not_tested,
                       f"{evidence} But the windows up to {COLLAPSE_BY:.0%} hold too few snapshots to show a larger r90.",
                       rule, needed)
    outcome = Outcome.supported if (settled <= COLLAPSE_BY + EPS).all() else Outcome.not_supported
    return Verdict(claim, source, outcome, evidence, rule)


# --- 5. attention entropy falls --------------------------------------------------------------------

@about_trained_models
def entropy_falls(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "Attention entropy falls as training proceeds (attention 'bubbling')."
    source = "section 4.2; Fig. 2"
    rule = (f"Readout-row attention entropy of each run's last layer, per m: supported when the seed-mean entropy at the last "
            f"evaluation is at least {ENTROPY_DROP:.0%} below its value at step 0, for every m of every condition of {MAIN}.")
    metrics = data.per_run("metrics", runs)
    rows = metrics[metrics["metric"] == "attention_entropy"] if not metrics.empty else metrics
    if rows.empty:
        return Verdict(claim, source, Outcome.not_tested, f"no attention_entropy metrics for {MAIN}.", rule,
                       f"{NEED_MAIN}, with the metrics table")
    rows = rows[rows["layer"] == rows.groupby("run_id")["layer"].transform("max")]
    rows = rows.sort_values("step", kind="stable")
    ends = rows.groupby(["run_id", "m"]).agg(first=("value", "first"), last=("value", "last")).reset_index()
    ends = ends.merge(runs[["run_id", "condition"]], on="run_id")
    cells = ends.groupby(["condition", "m"])[["first", "last"]].mean()
    drop = 1 - cells["last"] / cells["first"]
    evidence = (f"seed-mean entropy of the last layer goes from {_f(cells['first'].mean())} at step 0 to {_f(cells['last'].mean())} nats "
                f"at the end on average; relative drop per m and condition {_span(drop, '.1%')} over {len(cells)} cell(s).")
    outcome = Outcome.supported if (drop >= ENTROPY_DROP - EPS).all() else Outcome.not_supported
    return Verdict(claim, source, outcome, evidence, rule)


# --- 6. commutator energy outside the execution subspace -------------------------------------------

NEED_COMMUTATORS = "runs with commutator.every > 0 (the SGD commutator measurements), aggregated"


def _commutators(data: ReportData, runs: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = data.per_run("commutators", runs)
    if rows.empty:
        return rows
    return rows[np.isfinite(rows[column].astype("float64"))]


@about_trained_models
def commutator_energy_outside(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = "More than 92% of the commutator energy lies outside the execution subspace."
    source = "section 4.3; Fig. 5"
    rule = (f"Per run, the median over every measurement and sample of 1 - rho_exec^2 (energy outside the causal execution "
            f"basis); supported when its seed mean exceeds {OUTSIDE_ENERGY_MIN:.0%} in every condition of {MAIN}.")
    rows = _commutators(data, runs, "outside_energy")
    if rows.empty:
        return Verdict(claim, source, Outcome.not_tested, "no commutator measurements with an execution basis.", rule, NEED_COMMUTATORS)
    per_run = rows.groupby(["run_id", "condition"])["outside_energy"].median().reset_index()
    cells = _seed_means(per_run, ["condition"], "outside_energy")
    evidence = (f"seed-mean outside-energy share {_span(cells['mean'], '.1%')} over {len(cells)} "
                f"condition(s) ({per_run['run_id'].nunique()} runs).")
    outcome = Outcome.supported if (cells["mean"] > OUTSIDE_ENERGY_MIN).all() else Outcome.not_supported
    return Verdict(claim, source, outcome, evidence, rule)


# --- 7. execution subspace beats random, more so early --------------------------------------------

@about_trained_models
def exec_beats_random_early(data: ReportData, runs: pd.DataFrame) -> Verdict:
    claim = ("The execution subspace captures more commutator energy than a random subspace of equal dimension, "
             "more so early in training than late.")
    source = "section 4.3; Fig. 4-5"
    rule = (f"Per run, the median of exec_random_ratio = rho_exec / rho_random (random subspaces matched block by block) over "
            f"all measurements, its first {PHASE:.0%} (early) and last {PHASE:.0%} (late) of measurement steps with a basis "
            f"(at least one each). Supported when, in every condition of {MAIN}, the seed-mean ratio over all measurements "
            "exceeds 1 and the early one exceeds the late one.")
    rows = _commutators(data, runs, "exec_random_ratio")
    if rows.empty:
        return Verdict(claim, source, Outcome.not_tested, "no commutator measurements with an execution basis.", rule, NEED_COMMUTATORS)
    rank = rows.groupby("run_id")["step"].rank(method="dense")
    n_steps = rows.groupby("run_id")["step"].transform("nunique")
    n_phase = np.maximum(np.floor(PHASE * n_steps + EPS), 1)  # as commutator_summary: 20%, at least one
    phases = pd.concat([rows.assign(phase="all"), rows[rank <= n_phase].assign(phase="early"),
                        rows[rank > n_steps - n_phase].assign(phase="late")])
    per_run = phases.groupby(["run_id", "condition", "phase"])["exec_random_ratio"].median().unstack("phase")
    cells = per_run.groupby("condition")[["all", "early", "late"]].mean()
    if n_steps.max() < 2:
        return Verdict(claim, source, Outcome.not_tested, f"one measurement with a basis per run (ratio {_f(cells['all'].mean())}).",
                       rule, "more commutator measurements per run (smaller commutator.every)")
    evidence = (f"seed-mean ratio exec / random: all {_span(cells['all'])}, early {_span(cells['early'])}, "
                f"late {_span(cells['late'])} over {len(cells)} condition(s).")
    return _unless_a_part_fails(claim, source, evidence, rule, [
        ("the ratio is not above 1 everywhere", (cells["all"] > 1).all()),
        ("the early ratio is not above the late one everywhere", (cells["early"] > cells["late"]).all())])


# --- 8 and 10. comparisons of variants: MLP models, multiplication ---------------------------------

def _compare_r90(data: ReportData, variant: pd.Series, keys: tuple[str, ...], higher: str, lower: str
                 ) -> tuple[pd.DataFrame, str]:
    """Seed-mean r90 (per run: mean over layers and matrices) of both variants, one row per group of runs
    sharing all other conditions (`others`) that holds both and in which both learned the task (seed-mean
    final accuracy >= LEARNED_ACCURACY, or unknown), and a note on the groups left out for not learning:
    the comparison is about the geometry of models that learn, as claims 1-7 are."""
    runs = data.variants(variant, keys)
    er = data.per_run("effective_rank")
    if er.empty:
        return pd.DataFrame(columns=[higher, lower]), ""
    er = er[er["window"] == "whole"].dropna(subset=["r90"])
    per_run = er.assign(r90=er["r90"].astype("float64")).groupby("run_id", as_index=False)["r90"].mean()
    per_run = per_run.merge(runs[["run_id", "variant", "others"]], on="run_id")
    wide = per_run.pivot_table(index="others", columns="variant", values="r90", aggfunc="mean")
    wide = wide.reindex(columns=[higher, lower]).dropna()
    accuracy = runs.assign(accuracy=final_accuracy(runs).values).groupby(["others", "variant"])["accuracy"].mean()
    untrained = sorted({others for (others, _), acc in accuracy.items() if acc < LEARNED_ACCURACY} & set(wide.index))
    if not untrained:
        return wide, ""
    names = ", ".join(str(o) or "(the only group)" for o in untrained[:3]) + (", ..." if len(untrained) > 3 else "")
    note = (f"{len(untrained)} of {len(wide)} matched group(s) left out because a variant's runs did not learn the "
            f"task (seed-mean final accuracy < {LEARNED_ACCURACY:.2f}): {names}.")
    return wide.drop(index=untrained), note


def _comparison_verdict(claim, source, compared: tuple[pd.DataFrame, str], higher, lower, needed) -> Verdict:
    wide, note = compared
    rule = (f"r90 per run = mean over layers and matrices of the whole-trajectory r90; supported when the seed-mean r90 of "
            f"{higher} runs exceeds that of {lower} runs in every group of runs that share all other conditions "
            f"and in which both learned the task (seed-mean final accuracy >= {LEARNED_ACCURACY:.2f}).")
    if wide.empty and note:
        return Verdict(claim, source, Outcome.not_tested, f"no matched group in which both learned the task. {note}",
                       rule, f"{needed}, with runs that learn the task (more train.steps, or a tuned preset)")
    if wide.empty:
        return Verdict(claim, source, Outcome.not_tested, f"no {higher} and {lower} runs that share their other conditions.", rule, needed)
    holds = wide[higher] > wide[lower]
    evidence = (f"seed-mean r90 {higher} {_f(wide[higher].mean(), 1)} vs {lower} {_f(wide[lower].mean(), 1)} (mean over "
                f"{len(wide)} matched group(s)); {higher} is higher in {int(holds.sum())} of {len(wide)}.")
    if note:
        evidence = f"{evidence} {note}"
    return Verdict(claim, source, Outcome.supported if holds.all() else Outcome.not_supported, evidence, rule)


def mlp_higher_dimensional(data: ReportData) -> Verdict:
    wide = _compare_r90(data, mlp_variant(data.completed), MLP_KEYS, "attention + MLP", "attention only")
    return _comparison_verdict("Models with MLPs are higher-dimensional (no clear collapse).", "section 4.5", wide,
                               "attention + MLP", "attention only",
                               "model=attention_only,standard in one sweep, other settings equal")


def mul_higher_dimensional(data: ReportData) -> Verdict:
    wide = _compare_r90(data, op_variant(data.completed), OP_KEYS, "mul", "add")
    return _comparison_verdict("Multiplication needs more dimensions than addition (4-6 vs 3-4).", "sections 4.1, 4.6",
                               wide, "mul", "add", "task=modadd,modmul in one sweep, other settings equal")


# --- 9. forgetting under sequential curricula ------------------------------------------------------

def _forgetting(accuracy: pd.DataFrame) -> pd.Series:
    """Per run: the largest drop from peak to final accuracy over the m it learned (peak >= LEARNED_ACCURACY),
    counting only the m of earlier stages under curriculum=sequential; runs that learned none are left out."""
    acc = accuracy.sort_values("step", kind="stable")
    per_m = acc.groupby(["run_id", "m"]).agg(
        peak=("value", "max"), final=("value", "last"), kind=("curriculum.kind", "first"), ms=("curriculum.ms", "first"),
    ).reset_index()
    later = [m in json.loads(ms)[-1:] for m, ms in zip(per_m["m"], per_m["ms"])]  # the last stage's m
    counted = ~((per_m["kind"] == "sequential") & np.array(later, dtype=bool)) & (per_m["peak"] >= LEARNED_ACCURACY)
    per_m = per_m[counted]
    return (per_m["peak"] - per_m["final"]).groupby(per_m["run_id"]).max()


def sequential_forgets(data: ReportData) -> Verdict:
    claim = "Sequential curricula forget earlier m; mixed training does not."
    source = "section 4.5"
    rule = (f"Per run, the forgetting is the largest drop from peak to final held-out accuracy over the m it learned "
            f"(peak >= {LEARNED_ACCURACY:.0%}); under curriculum=sequential only the m of earlier stages count. Supported "
            f"when the seed-mean forgetting is at least {FORGETTING_DROP:.2f} in every sequential condition and below it in "
            "every mixed condition.")
    needed = "curriculum=sequential and curriculum=mixed runs in one sweep, trained long enough to learn the early m"
    metrics = data.per_run("metrics")
    accuracy = metrics[metrics["metric"] == "eval_accuracy"] if not metrics.empty else metrics
    if accuracy.empty or not (accuracy["curriculum.kind"] == "sequential").any():
        return Verdict(claim, source, Outcome.not_tested, "no sequential runs with accuracy metrics.", rule, needed)
    forgetting = _forgetting(accuracy).rename("forgetting").reset_index()
    forgetting = forgetting.merge(data.completed[["run_id", "condition", "curriculum.kind"]], on="run_id")
    cells = forgetting.groupby(["curriculum.kind", "condition"])["forgetting"].mean()
    seq = cells.get("sequential", pd.Series(dtype="float64"))
    mixed = cells.get("mixed", pd.Series(dtype="float64"))
    if seq.empty:
        return Verdict(claim, source, Outcome.not_tested,
                       f"the sequential runs never reached {LEARNED_ACCURACY:.0%} accuracy on an earlier m.", rule, needed)
    evidence = f"seed-mean forgetting under sequential {_span(seq)} ({len(seq)} condition(s))"
    if not (seq >= FORGETTING_DROP - EPS).all():
        return Verdict(claim, source, Outcome.not_supported, evidence + ".", rule)
    if mixed.empty:
        return Verdict(claim, source, Outcome.not_tested, evidence + "; no mixed runs that learned an m to compare.", rule, needed)
    evidence += f"; under mixed {_span(mixed)} ({len(mixed)} condition(s))."
    outcome = Outcome.supported if (mixed < FORGETTING_DROP).all() else Outcome.not_supported
    return Verdict(claim, source, outcome, evidence, rule)


# --- 11. SAE latents do not isolate execution (the probe stage's rule) ------------------------------

def sae_does_not_isolate_execution(data: ReportData) -> Verdict:
    claim = ("SAE latents capture routing structure but do not isolate execution: ablating the task-correlated "
             "latents barely changes accuracy.")
    source = "sections 3.4, 4.4; Fig. 6"
    rule = ("The probe stage's rule (probes/claims.py), at checkpoints where the clean model reaches 90% accuracy and the "
            "SAE reconstruction loses at most 0.05 of it: supported when zeroing the task-correlated latents costs at "
            "most 0.05 accuracy against the reconstruction everywhere; not supported when it costs more, and more than "
            "zeroing as many random latents does. Runs probed with different probe settings (a run re-probed with "
            "probe.sae_l1=0.5) are never averaged together: each settings group is decided on separately, as a "
            "condition is, and every group counts toward the verdict.")
    if not data.has("sae_probes"):
        return Verdict(claim, source, Outcome.not_tested, "no SAE probe results in this sweep.", rule,
                       "probe the runs: python -m manifold_sweeps.probes SWEEP, or aggregate with --probes")
    # Imported here: the probe package is needed only for sweeps that hold probe results.
    from ..probes.claims import sae_execution_claim
    from ..probes.tables import sae_probe_summary

    summary = sae_probe_summary(data.tables["sae_probes"], data.completed, data.conditions)
    result = sae_execution_claim(summary)
    return Verdict(claim, source, Outcome(result["verdict"]), result["evidence"], rule, result["needed"])


CLAIMS: list[Callable[[ReportData], Verdict]] = [
    r90_in_range,
    vo_below_qk,
    seeds_dimension_not_orientation,
    collapse_early,
    entropy_falls,
    commutator_energy_outside,
    exec_beats_random_early,
    mlp_higher_dimensional,
    sequential_forgets,
    mul_higher_dimensional,
    sae_does_not_isolate_execution,
]
