"""cmim_hf.experiments: experiments that train and evaluate many models and judge the differences.

- `compare.py`: the cMIM paper's experiment (`cmim-hf compare`): every objective at several batch sizes and seeds,
  and verdicts on the paper's four claims.
- `compare_backbones.py`: informative embeddings beyond MIM (`cmim-hf compare-backbones`): plain BART and T5
  auto-encoders and cMIM-BART.
- `statistics.py`: paired comparisons over training seeds, batch-size effects and verdicts.
- `report.py`: the folders, per-seed rows, summaries over seeds and table cells both experiments write.

The command lines are in `cmim_hf/commands/`. This folder installs as `cmim_hf.experiments` (pyproject's
package-dir), like `training/` and `benchmarks/`.
"""
