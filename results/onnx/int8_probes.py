"""int8 ONNX embeddings against float32 torch embeddings on the downstream probes, over several seeds.

    OMP_NUM_THREADS=1 .venv/bin/python results/onnx/int8_probes.py [--seeds 0 1 2] [--output_dir results/onnx]

For each shipped checkpoint, the informative embedding of the float32 torch model and of its int8 ONNX export
(`export_onnx(..., quantize="int8")`) are probed on FreeSolv, solubility and solubility classes with
`cmim_hf.evaluation.evaluate_downstream` (the probes of `cmim-hf evaluate` without the random forests, which cost
the most), once per seed (the seed draws FreeSolv's outer folds and every inner fold). Each (checkpoint, backend,
seed) result is saved as it finishes (`runs/*.json`), so a rerun resumes; `int8_probes.md` and `int8_probes.json`
are the table: mean and standard deviation over the seeds, and whether int8's mean lies within float32's mean
+- its seed standard deviation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

CHECKPOINTS = ("cmim-moses-tiny", "cmim-moses-small")
BACKENDS = ("torch-float32", "onnx-int8")
PROBES = {"regression": ("ridge", "svr"), "classification": ("logistic_regression", "svc")}
METRICS = {"freesolv": "rmse", "solubility": "rmse", "solubility_class": "roc_auc"}


def embed_function(checkpoint: str, backend: str, workdir: Path):
    from cmim_hf.onnx_backend import load_embedder
    from cmim_hf.onnx_export import export_onnx

    if backend == "torch-float32":
        embed = load_embedder(checkpoint, device="cpu")
    else:
        embed = load_embedder(export_onnx(checkpoint, workdir / checkpoint, quantize="int8"), backend="onnx")
    return lambda smiles, kind: embed(smiles, kind=kind, on_invalid="ignore", on_unknown="ignore")


def run(checkpoint: str, backend: str, seed: int, workdir: Path) -> dict:
    from cmim_hf.evaluation.downstream import evaluate_downstream

    results = evaluate_downstream(embed_function(checkpoint, backend, workdir), kinds=("informative",), baselines=(),
                                  probes=PROBES, seed=seed, progress=False)
    return {task: {probe: values for probe, values in per_kind["informative"].items()}
            for task, per_kind in results["tasks"].items()}


def table(runs: dict, seeds: list[int]) -> tuple[str, dict]:
    lines = ["| checkpoint | task | probe | metric | float32 torch (mean ± seed std) | int8 ONNX (mean ± seed std) | "
             "int8 within float32's seed spread |", "|---|---|---|---|---|---|---|"]
    summary = {}
    for checkpoint in CHECKPOINTS:
        for task, metric in METRICS.items():
            for probe in ("best", *PROBES["classification" if task == "solubility_class" else "regression"]):
                cells, values = [], {}
                for backend in BACKENDS:
                    scores = np.array([runs[(checkpoint, backend, s)][task][probe][metric] for s in seeds])
                    values[backend] = (float(scores.mean()), float(scores.std(ddof=1)) if len(scores) > 1 else 0.0)
                    cells.append(f"{values[backend][0]:.3f} ± {values[backend][1]:.3f}")
                (mean32, std32), (mean8, _) = values["torch-float32"], values["onnx-int8"]
                within = abs(mean8 - mean32) <= std32
                summary[f"{checkpoint}/{task}/{probe}/{metric}"] = {**{b: v for b, v in values.items()},
                                                                    "within": within}
                lines.append(f"| {checkpoint} | {task} | {probe} | {metric} | {cells[0]} | {cells[1]} | "
                             f"{'yes' if within else 'no'} |")
    return "\n".join(lines), summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output_dir", default=str(Path(__file__).parent))
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    runs = {}
    with tempfile.TemporaryDirectory() as workdir:
        for checkpoint in CHECKPOINTS:
            for backend in BACKENDS:
                for seed in args.seeds:
                    path = out / "runs" / f"{checkpoint}-{backend}-seed{seed}.json"
                    if not path.is_file():
                        print(f"probing {checkpoint} {backend} seed {seed}", file=sys.stderr, flush=True)
                        path.write_text(json.dumps(run(checkpoint, backend, seed, Path(workdir)), indent=1))
                    runs[(checkpoint, backend, seed)] = json.loads(path.read_text())
    text, summary = table(runs, args.seeds)
    command = "OMP_NUM_THREADS=1 .venv/bin/python results/onnx/int8_probes.py --seeds " + " ".join(map(str, args.seeds))
    (out / "int8_probes.md").write_text(f"# int8 ONNX vs float32 torch: downstream probes\n\n`{command}`\n\n"
                                        f"Seeds {args.seeds}; informative embedding; probes without random forests. "
                                        f"rmse: lower is better; roc_auc: higher is better.\n\n{text}\n")
    (out / "int8_probes.json").write_text(json.dumps({"command": command, "seeds": args.seeds,
                                                      "results": summary}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
