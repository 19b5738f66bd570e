"""`cmim-hf compare-backbones`: its table and its verdict rule, on synthetic per-seed evaluations."""

import pytest

from cmim_hf.commands.compare_backbones import main
from cmim_hf.experiments.compare_backbones import headline_rows, report_markdown, summary_rows, verdicts


def _result(encoder: float, informative: float, auc_encoder: float = 0.9, auc_informative: float = 0.9,
            latent: float | None = None) -> dict:
    """An `evaluate_model` result with FreeSolv RMSE and class AUC for the encoder and informative kinds."""
    freesolv = {"encoder": {"best": {"rmse": encoder}}, "informative": {"best": {"rmse": informative}},
                "decoder": {"best": {"rmse": informative + 0.1}}}
    if latent is not None:
        freesolv["latent"] = {"best": {"rmse": latent}}
    classes = {"encoder": {"best": {"roc_auc": auc_encoder}}, "informative": {"best": {"roc_auc": auc_informative}}}
    return {"tasks": {"freesolv": freesolv, "solubility_class": classes},
            "reconstruction": {"moses_test": {"token_accuracy": 0.9, "exact": 0.2}}}


def test_clear_win_clear_loss_and_noise_are_judged_by_the_stated_rule():
    results = {}
    for seed, jitter in zip((42, 43, 44), (0.00, 0.01, -0.01)):
        # a: informative better by ~0.3 RMSE and 0.02 AUC on every seed; b: worse by ~0.3; c: +-0.2 noise
        results[("a", seed)] = _result(2.0 + jitter, 1.7 + jitter, 0.90 + jitter / 10, 0.92 + jitter / 10)
        results[("b", seed)] = _result(1.7 + jitter, 2.0 + jitter, 0.92 + jitter / 10, 0.90 + jitter / 10)
        noise = {42: 0.2, 43: -0.2, 44: 0.05}[seed]
        results[("c", seed)] = _result(2.0, 2.0 + noise, 0.90, 0.90 - noise / 10, latent=2.1)
    rows = headline_rows(results)
    judged = {v["model"]: v for v in verdicts(rows)}
    assert judged["a"]["verdict"] == "held" and {c["outcome"] for c in judged["a"]["comparisons"]} == {"won"}
    assert judged["b"]["verdict"] == "did not hold" and {c["outcome"] for c in judged["b"]["comparisons"]} == {"lost"}
    assert judged["c"]["verdict"] == "inconclusive"
    advantage = judged["a"]["comparisons"][0]["advantage"]
    assert advantage == pytest.approx(0.3)  # RMSE: lower is better, so encoder - informative
    summaries = summary_rows(rows)
    latent = next(s for s in summaries if s["model"] == "c" and s["kind"] == "latent")
    assert latent["freesolv"] == pytest.approx(2.1) and latent["freesolv_std"] == pytest.approx(0.0)
    settings = {"recipe": "tiny-cpu", "max_steps": 1700, "batch_size": 64, "seeds": [42, 43, 44], "probes": {},
                "total_hours": 1.0, "command": "cmim-hf compare-backbones", "models": ["a", "b", "c"]}
    text = report_markdown(summaries, list(judged.values()), {"ecfp4": {"freesolv": 1.837}}, settings)
    assert "| a | **held** |" in text and "| b | **did not hold** |" in text and "| c | **inconclusive** |" in text
    assert "| baseline | ecfp4 | 1.837 | - | - | - | - |" in text


@pytest.mark.parametrize("argv, message", [(["--seeds", "0"], "--seeds"), (["--max_steps", "0"], "--max_steps"),
                                           (["--models", "gpt2-plain"], "invalid choice")])
def test_bad_arguments_are_refused_before_any_training(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--output_dir", str(tmp_path), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
