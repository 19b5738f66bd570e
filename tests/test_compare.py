"""`cmim-hf compare`: the verdict rules on synthetic per-seed tables, the tables and the command line, and (slow)
the whole comparison in miniature: two objectives x two batch sizes x two seeds of a tiny model, through the
real training entry point and evaluation, with the plots and the resume."""

import json

import numpy as np
import pytest
import yaml

from cmim_hf.evaluation.names import BASELINE_NAMES
from cmim_hf.experiments.compare import COMPARED_KINDS
from cmim_hf.experiments.compare import (
    claims_markdown,
    comparison_markdown,
    headline_rows,
    model_dir,
    paper_claims,
    run_compare,
    summary_rows,
    training_seeds,
)
from cmim_hf.commands.compare import main
from cmim_hf.experiments.report import HEADLINE
from cmim_hf.experiments.statistics import claim_verdict, group_verdict, paired_comparison

TINY_TRAINING = ["--max_train_samples", "256", "--max_eval_samples", "32", "--num_reconstruction_samples", "8",
                 "--eval_steps", "0", "--save_steps", "0", "--logging_steps", "2", "--disable_tqdm", "true",
                 "--encoder_hidden_size", "32", "--decoder_hidden_size", "32", "--encoder_layers", "1",
                 "--decoder_layers", "1", "--encoder_ffn_dim", "64", "--decoder_ffn_dim", "64",
                 "--latent_size", "8", "--report_to", "csv"]


@pytest.mark.slow
def test_compare_miniature_trains_evaluates_and_tabulates(tmp_path):
    pytest.importorskip("rdkit")
    out = tmp_path / "compare"
    kwargs = dict(objectives=("cmim", "infonce"), batch_sizes=(4, 8), seeds=(3, 4), max_steps=3,
                  extra_train_args=TINY_TRAINING, reconstruction_samples=8, generation_samples=4,
                  tasks=("freesolv",))
    comparison = run_compare(out, **kwargs)
    assert {(r["objective"], r["batch_size"], r["seed"]) for r in comparison["rows"]} == {
        (o, b, s) for o in ("cmim", "infonce") for b in (4, 8) for s in (3, 4)}
    assert all(r["freesolv"] > 0 for r in comparison["rows"])
    # the seed reached the training: the recipe saved with each model records it, and the models differ
    for seed in (3, 4):
        recipe = yaml.safe_load((model_dir(out, "cmim", 4, seed) / "train" / "final" / "recipe.yaml").read_text())
        assert recipe["training"]["seed"] == seed
    freesolv = {r["seed"]: r["freesolv"] for r in comparison["rows"]
                if (r["objective"], r["batch_size"], r["features"]) == ("cmim", 4, "informative")}
    assert freesolv[3] != freesolv[4]
    assert set(comparison["baselines"]) == set(BASELINE_NAMES)
    summary = {(s["objective"], s["batch_size"], s["features"]): s for s in comparison["summary"]}
    cell = summary[("cmim", 4, "informative")]
    assert cell["seeds"] == [3, 4] and cell["freesolv"] == pytest.approx(np.mean(list(freesolv.values())))
    assert cell["freesolv_std"] == pytest.approx(np.std(list(freesolv.values()), ddof=1))
    table = (out / "compare.md").read_text()
    assert f"| cmim | 4 | informative | {cell['freesolv']:.3f} ± {cell['freesolv_std']:.3f} |" in table
    assert "| baseline | - | ecfp4 |" in table and "### Every comparison" in table
    assert (out / "batch_size_freesolv.png").stat().st_size > 0
    assert json.loads((out / "compare.json").read_text())["settings"]["seeds"] == [3, 4]
    # a second call finds every evaluation on disk and trains nothing
    (model_dir(out, "cmim", 4, 3) / "train").rename(model_dir(out, "cmim", 4, 3) / "moved")
    again = run_compare(out, **kwargs)
    assert not (model_dir(out, "cmim", 4, 3) / "train").exists()
    assert again["rows"] == comparison["rows"]
    assert len(again["settings"]["reused_models"]) == 8
    assert again["settings"]["model_seconds"] == comparison["settings"]["model_seconds"]  # read back from disk
    assert len(comparison["settings"]["model_seconds"]) == 8
    assert "which found 8 of the models evaluated on disk" in (out / "compare.md").read_text()
    verdicts = [c["verdict"] for c in again["claims"]]
    assert verdicts[0] == verdicts[2] == verdicts[3] == "not tested"  # they need MIM, not trained here
    assert verdicts[1] in ("held", "partly held", "did not hold", "inconclusive")  # cMIM and InfoNCE


# ------------------------------------------------------------------------------------------------
# A single paired comparison
# ------------------------------------------------------------------------------------------------
def test_paired_comparison_clear_win_clear_loss_and_noise():
    # RMSE (lower is better): A is 0.20 better on every seed, give or take 0.01 -> won
    win = paired_comparison([1.00, 1.11, 0.95], [1.20, 1.30, 1.16], lower_is_better=True)
    assert win["outcome"] == "won" and win["advantage"] == pytest.approx(0.2, abs=1e-9)
    assert 0 < win["low"] < 0.2 < win["high"] and win["n"] == 3
    # the same numbers with the sides swapped -> lost, the interval mirrored
    loss = paired_comparison([1.20, 1.30, 1.16], [1.00, 1.11, 0.95], lower_is_better=True)
    assert loss["outcome"] == "lost" and loss["high"] == pytest.approx(-win["low"])
    # AUC (higher is better): A ahead by 0.017 on average, but behind on one seed -> inside the noise
    noise = paired_comparison([0.92, 0.93, 0.90], [0.90, 0.89, 0.91], lower_is_better=False)
    assert noise["outcome"] == "inconclusive" and noise["advantage"] == pytest.approx(0.05 / 3, abs=1e-9)
    assert noise["low"] < 0 < noise["high"]
    # the interval is Student's t over the per-seed advantages: half-width t(0.975, 2) * sd / sqrt(3)
    advantages = np.array([0.20, 0.19, 0.21])
    half_width = 4.302652729911275 * advantages.std(ddof=1) / np.sqrt(3)
    assert win["high"] - win["low"] == pytest.approx(2 * half_width)


def test_paired_comparison_one_seed_ties_and_margin():
    assert paired_comparison([1.0], [2.0], lower_is_better=True) == {
        "outcome": "inconclusive", "advantage": 1.0, "low": None, "high": None, "n": 1}  # no spread to judge by
    assert paired_comparison([0.5, 0.5], [0.5, 0.5], lower_is_better=False)["outcome"] == "inconclusive"
    assert paired_comparison([0.6, 0.7], [0.5, 0.6], lower_is_better=False)["outcome"] == "won"  # same +0.1
    # non-inferiority: 1 point behind on every seed is within a 2-point margin, 5 points behind is not
    behind = paired_comparison([0.80, 0.85, 0.90], [0.81, 0.86, 0.91], lower_is_better=False, margin=0.02)
    assert behind["outcome"] == "won" and behind["advantage"] == pytest.approx(-0.01)
    far = paired_comparison([0.76, 0.80, 0.86], [0.81, 0.86, 0.91], lower_is_better=False, margin=0.02)
    assert far["outcome"] == "lost"
    with pytest.raises(ValueError, match="equally long"):
        paired_comparison([1.0, 2.0], [1.0], lower_is_better=True)


def test_group_and_claim_verdicts_follow_the_counts():
    W, L, I = "won", "lost", "inconclusive"
    assert group_verdict([W] * 5 + [I] * 4) == "held"  # at least half won, none lost
    assert group_verdict([W] * 4 + [I] * 5) == "partly held"  # under half won
    assert group_verdict([W] * 8 + [L]) == "partly held"  # one loss spoils "held"
    assert group_verdict([W, L, L] + [I] * 6) == "did not hold"
    assert group_verdict([I] * 9) == group_verdict([W, L] + [I] * 7) == "inconclusive"
    assert group_verdict([]) == "not tested"
    assert claim_verdict([[W, W], [W, I]]) == "held"
    assert claim_verdict([[W, W], [L, I]]) == "did not hold"
    assert claim_verdict([[I, I], [I]]) == "inconclusive"
    assert claim_verdict([[W, W], [I, I]]) == "partly held"
    assert claim_verdict([[W, W], []]) == "not tested"


# ------------------------------------------------------------------------------------------------
# The four claims on synthetic per-seed tables
# ------------------------------------------------------------------------------------------------
SEED_NOISE = {42: -0.01, 43: 0.0, 44: 0.01}  # the same seed shifts every model alike: the seeds are paired


def _row(objective, batch, seed, features, freesolv, auc, token_accuracy=0.9):
    return {"objective": objective, "batch_size": batch, "seed": seed, "features": features, "freesolv": freesolv,
            "solubility": None, "solubility_class": auc, "token_accuracy": token_accuracy,
            "exact_reconstruction": 0.2, "prior_validity": 0.1}


def _table():
    """cMIM best and flat over batch sizes, MIM second, InfoNCE worse and degrading with the batch size;
    informative beats latent; small seed-to-seed noise."""
    rows = []
    for batch, drift in ((16, 0.0), (64, 0.3), (256, 0.6)):
        for seed, noise in SEED_NOISE.items():
            for features, bonus in (("informative", 0.0), ("latent", 0.1)):  # latent worse by 0.1
                rows.append(_row("cmim", batch, seed, features, 1.0 + bonus + noise, 0.90 - bonus + noise,
                                 token_accuracy=0.90 + noise))
                rows.append(_row("mim", batch, seed, features, 1.2 + bonus + noise, 0.85 - bonus + noise,
                                 token_accuracy=0.91 + noise))
                rows.append(_row("infonce", batch, seed, features, 1.3 + drift + bonus + noise,
                                 0.80 - drift / 3 - bonus + noise))
    return rows


def test_paper_claims_hold_on_a_clear_table():
    claims = paper_claims(_table())
    assert [c["verdict"] for c in claims] == ["held"] * 4
    assert claims[0]["counts"] == {"vs MIM": {"won": 6, "lost": 0, "inconclusive": 0},
                                   "vs InfoNCE": {"won": 6, "lost": 0, "inconclusive": 0}}
    assert claims[0]["evidence"].startswith("vs MIM: 6 won, 0 lost, 0 inconclusive of 6")
    assert claims[1]["counts"]["cMIM vs InfoNCE"]["won"] == 4  # two tasks x (informative, latent)
    assert claims[3]["counts"]["cMIM vs MIM"] == {"won": 3, "lost": 0, "inconclusive": 0}
    table = claims_markdown(claims)
    assert table.count("| **held** |") == 4 and "vs MIM: 6 / 0 / 0" in table and "2. cMIM is much less sensitive" in table
    assert "| 1 | vs MIM | freesolv | 16 | +0.200 [+0.200, +0.200] | won |" in table


def test_paper_claims_clear_losses():
    rows = _table()
    worse = [dict(r, freesolv=r["freesolv"] + 0.5, solubility_class=r["solubility_class"] - 0.2)
             if r["objective"] == "cmim" else r for r in rows]
    claims = paper_claims(worse)
    assert claims[0]["verdict"] == "did not hold"
    assert claims[0]["counts"]["vs MIM"] == {"won": 0, "lost": 6, "inconclusive": 0}

    swapped = [dict(r, features={"latent": "informative", "informative": "latent"}[r["features"]]) for r in rows]
    assert paper_claims(swapped)[2]["verdict"] == "did not hold"

    # cMIM drifts with the batch size and InfoNCE is flat: claim 2 is lost
    drift = {16: 0.0, 64: 0.3, 256: 0.6}
    reversed_drift = [dict(r, freesolv=r["freesolv"] + drift[r["batch_size"]]) if r["objective"] == "cmim" else
                      dict(r, freesolv=r["freesolv"] - drift[r["batch_size"]]) if r["objective"] == "infonce" else r
                      for r in rows if r["features"] == "informative"]
    claim2 = paper_claims(reversed_drift)[1]
    assert [c["outcome"] for c in claim2["comparisons"] if c["metric"] == "freesolv"] == ["lost"]
    # token accuracy 10 points under MIM's on every seed: at one batch size, claim 4 partly held; at all three,
    # it did not hold
    poor = [dict(r, token_accuracy=0.81 + SEED_NOISE[r["seed"]]) if (r["objective"], r["batch_size"]) ==
            ("cmim", 64) else r for r in rows]
    assert paper_claims(poor)[3]["counts"]["cMIM vs MIM"] == {"won": 2, "lost": 1, "inconclusive": 0}
    assert paper_claims(poor)[3]["verdict"] == "partly held"
    poorer = [dict(r, token_accuracy=0.81 + SEED_NOISE[r["seed"]]) if r["objective"] == "cmim" else r for r in rows]
    assert paper_claims(poorer)[3]["verdict"] == "did not hold"


def test_paper_claims_differences_inside_the_noise_are_inconclusive():
    """cMIM is better than MIM and InfoNCE by 0.02 RMSE / AUC everywhere, InfoNCE drifts by 0.02 per batch
    size, MIM's token accuracy is 1 point above cMIM's; the seed-to-seed noise is +-0.1 (+-0.03 for token
    accuracy), with a different pattern for each model. Nothing is won or lost; every claim is inconclusive."""
    pattern = (0.1, -0.1, 0.0)  # noise of the seeds 42, 43, 44, rotated differently for each model

    def noise(k, seed, scale=1.0):
        return scale * pattern[(seed - 42 + k) % 3]

    rows = []
    for b, batch in enumerate((16, 64, 256)):
        for seed in (42, 43, 44):
            for o, (objective, edge, drift) in enumerate((("cmim", 0.02, 0.0), ("mim", 0.0, 0.0),
                                                           ("infonce", 0.0, 0.02 * b))):
                for f, features in enumerate(("informative", "latent")):
                    k = b + o + f
                    rows.append(_row(objective, batch, seed, features, 1.5 - edge + drift + noise(k, seed),
                                     0.9 + edge + noise(k + 1, seed), token_accuracy=0.85 - edge / 2
                                     + noise(k, seed, scale=0.3)))
    claims = paper_claims(rows)
    for claim in claims:
        assert {c["outcome"] for c in claim["comparisons"]} == {"inconclusive"}, claim["claim"]
    assert [c["verdict"] for c in claims] == ["inconclusive"] * 4
    assert claims[0]["counts"]["vs MIM"] == {"won": 0, "lost": 0, "inconclusive": 6}
    # with a single seed, every comparison is inconclusive however large the difference
    one_seed = [r for r in _table() if r["seed"] == 42]
    assert [c["verdict"] for c in paper_claims(one_seed)] == ["inconclusive"] * 4


def test_paper_claims_need_their_models():
    rows = _table()
    without_infonce = [r for r in rows if r["objective"] != "infonce"]
    assert [c["verdict"] for c in paper_claims(without_infonce)] == ["not tested", "not tested", "held", "held"]
    without_mim = [r for r in rows if r["objective"] != "mim"]
    assert [c["verdict"] for c in paper_claims(without_mim)] == ["not tested", "held", "not tested", "not tested"]


# ------------------------------------------------------------------------------------------------
# Tables and the command line
# ------------------------------------------------------------------------------------------------
def _result(freesolv):
    return {"tasks": {"freesolv": {f: {"best": {"rmse": freesolv}} for f in COMPARED_KINDS}},
            "reconstruction": {"moses_test": {"token_accuracy": 0.9, "exact": 0.25}},
            "generation": {"prior": {"validity": 0.5}}}


def test_headline_rows_summary_and_table():
    rows = headline_rows({("cmim", 16, 42): _result(1.5), ("cmim", 16, 43): _result(1.7)})
    assert len(rows) == 2 * len(COMPARED_KINDS) and rows[0]["objective"] == "cmim" and rows[0]["batch_size"] == 16
    assert rows[0]["seed"] == 42 and rows[0]["freesolv"] == 1.5 and rows[0]["solubility"] is None
    summaries = summary_rows(rows)
    informative = next(s for s in summaries if s["features"] == "informative")
    assert informative["seeds"] == [42, 43] and informative["freesolv"] == pytest.approx(1.6)
    assert informative["freesolv_std"] == pytest.approx(np.sqrt(0.02))  # sample sd of 1.5 and 1.7
    assert informative["token_accuracy_std"] == 0.0 and informative["solubility"] is None
    settings = {"recipe": "tiny-cpu", "max_steps": 10, "batch_sizes": [16], "seeds": [42, 43], "probes": {},
                "hours": 0.1, "command": "cmim-hf compare --seeds 2"}
    table = comparison_markdown(summaries, {"ecfp4": {"freesolv": 1.8}}, settings)
    assert "| cmim | 16 | informative | 1.600 ± 0.141 | - | - | 0.900 ± 0.000 | 0.250 ± 0.000 | 0.500 ± 0.000 |" in table
    assert "| baseline | - | ecfp4 | 1.800 | - | - |" in table
    assert "training seeds [42, 43]" in table and "`cmim-hf compare --seeds 2`" in table
    assert "Wall time 0.10 h." in table
    timed = comparison_markdown(summaries, {}, dict(settings, reused_models=["cmim-bs16/seed-42"],
                                                    model_seconds={"cmim-bs16/seed-42": 360.0, "cmim-bs16/seed-43": 360.0}))
    assert "Wall time 0.10 h for this invocation, which found 1 of the models evaluated on disk." in timed
    assert "summed over the 2 models that recorded their time (seconds.json): 0.20 h." in timed
    one_seed = comparison_markdown(summary_rows(rows[:3]), {}, settings)
    assert "| cmim | 16 | informative | 1.500 | - |" in one_seed  # no spread with one seed


def test_training_seeds_start_at_the_recipe_seed():
    assert training_seeds("tiny-cpu", 3) == [42, 43, 44]
    assert training_seeds("tiny-cpu", 1) == [42]
    with pytest.raises(ValueError, match=">= 1"):
        training_seeds("tiny-cpu", 0)
    assert set(HEADLINE) == {"freesolv", "solubility", "solubility_class"}


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "argument --seeds: expected an integer >= 1, got '0'"),
    (["--batch_sizes", "16", "0"], "argument --batch_sizes: expected an integer >= 1, got '0'"),
    (["--tasks", "bogus"], "argument --tasks: invalid choice: 'bogus'"),
    (["--max_grad_norm", "nan"], "training arguments: `max_grad_norm` must be a finite number, got nan"),
    (["--seed_list", "1", "1"], "--seed_list: expected distinct seeds, got [1, 1]"),
    (["--seeds", "2", "--seed_list", "1", "2"], "--seeds and --seed_list: pass one of them"),
    (["--seed", "7"], "--seed: the training seeds are set by --seeds N or --seed_list"),
    (["--recipe", "tiny-cpx"], "--recipe: unknown recipe 'tiny-cpx' (did you mean 'tiny-cpu'?)"),
])
def test_command_line_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"cmim-hf compare: error: {message}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_the_committed_comparison_has_three_seeds_per_cell_and_the_docs_state_its_verdicts(repo_root):
    comparison = json.loads((repo_root / "results" / "compare" / "compare.json").read_text())
    cells = {(row["objective"], row["batch_size"]) for row in comparison["summary"]}
    assert len(cells) == 15 and all(row["seeds"] == [42, 43, 44] for row in comparison["summary"])
    readme = (repo_root / "docs" / "evaluation.md").read_text()
    for number, claim in enumerate(comparison["claims"], start=1):
        opening = f"{number}. **{claim['verdict'].capitalize()}** ("
        assert opening in readme, opening
        line = readme[readme.index(opening):].split("\n", 1)[0]
        for group, counts in claim["counts"].items():  # "won / lost / inconclusive" of every group
            assert f"{counts['won']} / {counts['lost']} / {counts['inconclusive']}" in line, (line, group)
