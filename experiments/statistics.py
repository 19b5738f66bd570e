"""Statistics of experiments over training seeds: paired comparisons, batch-size effects and verdicts.

A comparison of A with B pairs their models trained with the same seed (COMPARISON_RULE); a group of comparisons
and a claim made of groups get a verdict by VERDICT_RULE. Used by `compare.py` (the paper's claims) and
`compare_backbones.py` (informative embeddings beyond MIM). scipy is imported inside the functions that need it,
so the commands' `--help` does not pay for it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

__all__ = ["COMPARISON_RULE", "CONFIDENCE", "NON_INFERIORITY_RULE", "SIGNIFICANCE", "VERDICT_RULE", "batch_size_effect",
           "claim_verdict", "group_verdict", "outcome_counts", "paired_comparison", "seed_summaries",
           "sensitivity_comparison"]

WON, LOST, INCONCLUSIVE = "won", "lost", "inconclusive"
CONFIDENCE = 0.95
SIGNIFICANCE = 1 - CONFIDENCE
COMPARISON_RULE = (
    "A comparison of A with B on one metric pairs their models trained with the same seed; the advantage of A on "
    "a seed is B - A where lower is better, A - B otherwise. It is **won** when the 95% Student-t interval of the "
    "mean advantage over the seeds (a paired t-test) lies entirely above zero, **lost** when it lies entirely "
    "below zero, and **inconclusive** otherwise, as it always is with a single seed (no spread to judge by).")
NON_INFERIORITY_RULE = ("Claim 4 is a non-inferiority comparison: the interval is compared with minus the margin "
                        "instead of zero.")
VERDICT_RULE = (
    "From the counts of a group of comparisons: **held** when none is lost and at least half are won; **did not "
    "hold** when more are lost than won; **partly held** when more are won than lost otherwise; **inconclusive** "
    "when as many are won as lost (most often none of either). A claim judged on several groups held when every "
    "group held, did not hold when any group did not, is inconclusive when every group is, and partly held "
    "otherwise.")


def paired_comparison(a: Sequence[float], b: Sequence[float], *, lower_is_better: bool,
                      margin: float = 0.0) -> dict:
    """Whether A beats B on one metric, from per-seed values of both (`a[i]`, `b[i]` share a training seed).

    Args:
        a, b: the metric of A's and B's models, one value per seed, the seeds in the same order.
        lower_is_better: the metric's direction.
        margin: 0 asks "is A better?"; > 0 asks "is A no more than `margin` worse?" (non-inferiority).

    Returns:
        {"outcome": won | lost | inconclusive (see COMPARISON_RULE), "advantage": mean advantage of A,
         "low"/"high": its 95% t-interval (None with one seed), "n": number of seeds}.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty lists of per-seed values, got shapes {a.shape} and "
                         f"{b.shape}")
    advantage = b - a if lower_is_better else a - b
    mean = float(advantage.mean())
    if len(advantage) < 2:
        return {"outcome": INCONCLUSIVE, "advantage": mean, "low": None, "high": None, "n": len(advantage)}
    if np.allclose(advantage, mean, rtol=0, atol=1e-12):  # the same on every seed (up to rounding): no spread
        low = high = mean
    else:
        from scipy import stats  # imported here: `cmim-hf compare --help` does not pay for it

        interval = stats.ttest_1samp(advantage, 0.0).confidence_interval(CONFIDENCE)
        low, high = float(interval.low), float(interval.high)
    outcome = WON if low > -margin else LOST if high < -margin else INCONCLUSIVE
    return {"outcome": outcome, "advantage": mean, "low": low, "high": high, "n": len(advantage)}


def batch_size_effect(rows: list[dict], objective: str, features: str, task: str) -> dict | None:
    """How much a task's metric moves with the batch size, for one objective and embedding kind.

    Returns None with fewer than two batch sizes, else {"range": max - min of the seed means over batch sizes,
    "p": p-value of a one-way ANOVA over the batch sizes with the seeds as replicates (the spread of the seed
    means against the seed-to-seed spread; NaN without a seed-to-seed spread), "means": {batch size: mean}}.
    """
    by_batch: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        if row["objective"] == objective and row["features"] == features and row.get(task) is not None:
            by_batch[row["batch_size"]].append(row[task])
    if len(by_batch) < 2:
        return None
    means = {batch: float(np.mean(values)) for batch, values in sorted(by_batch.items())}
    p = math.nan
    groups = list(by_batch.values())
    if all(len(g) >= 2 for g in groups) and any(np.ptp(g) > 0 for g in groups):
        from scipy import stats

        p = float(stats.f_oneway(*groups).pvalue)
    return {"range": max(means.values()) - min(means.values()), "p": p, "means": means}


def sensitivity_comparison(cmim: dict, infonce: dict) -> str:
    """Claim 2 on one (task, features): won when InfoNCE's metric depends on the batch size (ANOVA p < 0.05)
    and cMIM's range is under half of InfoNCE's; lost when the same holds with the two swapped; inconclusive
    otherwise (neither depends on the batch size beyond the seed spread, or their ranges are within 2x)."""
    if infonce["p"] < SIGNIFICANCE and cmim["range"] < infonce["range"] / 2:
        return WON
    if cmim["p"] < SIGNIFICANCE and infonce["range"] < cmim["range"] / 2:
        return LOST
    return INCONCLUSIVE


HELD, PARTLY, NOT_HELD, NOT_TESTED = "held", "partly held", "did not hold", "not tested"


def group_verdict(outcomes: Sequence[str]) -> str:
    """The verdict of one group of comparisons (VERDICT_RULE); not tested when the group is empty."""
    if not outcomes:
        return NOT_TESTED
    won, lost = outcomes.count(WON), outcomes.count(LOST)
    if lost == 0 and won >= len(outcomes) / 2:
        return HELD
    if lost > won:
        return NOT_HELD
    return PARTLY if won > lost else INCONCLUSIVE


def claim_verdict(groups: Sequence[Sequence[str]]) -> str:
    """The verdict of a claim judged on several groups of comparisons (VERDICT_RULE)."""
    verdicts = [group_verdict(outcomes) for outcomes in groups]
    if not verdicts or NOT_TESTED in verdicts:
        return NOT_TESTED
    if all(v == HELD for v in verdicts):
        return HELD
    if NOT_HELD in verdicts:
        return NOT_HELD
    return INCONCLUSIVE if all(v == INCONCLUSIVE for v in verdicts) else PARTLY


def outcome_counts(comparisons: list[dict]) -> dict[str, int]:
    outcomes = [c["outcome"] for c in comparisons]
    return {outcome: outcomes.count(outcome) for outcome in (WON, LOST, INCONCLUSIVE)}


def seed_summaries(rows: list[dict], keys: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """One row per distinct value of `keys` in the per-seed `rows`: the keys, `seeds` (the seeds averaged), and
    for each metric `metric` = mean over seeds and `metric_std` = sample standard deviation over seeds (None
    with one seed; a metric no seed has is None). Rows are in the order their keys first appear."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        cells[tuple(row[key] for key in keys)].append(row)
    summaries = []
    for values, cell in cells.items():
        summary = {**dict(zip(keys, values)), "seeds": sorted(r["seed"] for r in cell)}
        for metric in metrics:
            numbers = [r[metric] for r in cell if r.get(metric) is not None]
            summary[metric] = float(np.mean(numbers)) if numbers else None
            summary[f"{metric}_std"] = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
        summaries.append(summary)
    return summaries
