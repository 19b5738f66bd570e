"""How close the ONNX exports' embeddings are to torch's, for both shipped checkpoints and every kind.

    OMP_NUM_THREADS=1 .venv/bin/python results/onnx/agreement.py [--moses 1000]

Molecules: the first `--moses` of MOSES train, and every FreeSolv and solubility molecule (the downstream sets,
RDKit-canonical as the probes see them). For float32, int8 (per-channel weight scales, what `cmim-hf export
--quantize int8` writes) and, for comparison, int8 with one scale per weight tensor, the worst and the mean cosine
of each row to the float32 torch row. Writes agreement.md and agreement.json next to this file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

CHECKPOINTS = ("cmim-moses-tiny", "cmim-moses-small")


def per_tensor_int8(fp32_folder: Path, target: Path) -> Path:
    """A copy of the float32 export quantised with one scale per weight tensor (per_channel=False)."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cmim_hf.onnx_export import ONNX_CONFIG_NAME, file_sha256

    shutil.copytree(fp32_folder, target)
    quant_pre_process(str(fp32_folder / "model.onnx"), str(target / "prepared.onnx"))
    quantize_dynamic(str(target / "prepared.onnx"), str(target / "model.onnx"), weight_type=QuantType.QInt8,
                     per_channel=False)
    (target / "prepared.onnx").unlink()
    config = json.loads((target / ONNX_CONFIG_NAME).read_text())
    config.update(onnx_sha256=file_sha256(target / "model.onnx"), quantization="int8")
    (target / ONNX_CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moses", type=int, default=1000)
    args = parser.parse_args(argv)
    from cmim_hf.data import moses_data_dir
    from cmim_hf.embeddings import embed_smiles, embedding_kinds, load_pretrained
    from cmim_hf.evaluation.tasks import load_task
    from cmim_hf.onnx_backend import ONNXEmbedder
    from cmim_hf.onnx_export import export_onnx

    with gzip.open(moses_data_dir() / "train.csv.gz", "rt") as handle:
        next(handle)
        moses = [next(handle).strip().split(",")[0] for _ in range(args.moses)]
    downstream = sorted(set(load_task("freesolv").smiles) | set(load_task("solubility").smiles))
    sets = {"MOSES": moses, "FreeSolv + solubility": downstream}
    results = {}
    rows = ["| checkpoint | export | kind | molecules | min cosine | mean cosine |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as workdir:
        for checkpoint in CHECKPOINTS:
            model, tokenizer = load_pretrained(checkpoint, device="cpu")
            fp32 = export_onnx(checkpoint, Path(workdir) / f"{checkpoint}-fp32")
            exports = {"float32": fp32,
                       "int8 (per channel, the default)": export_onnx(checkpoint, Path(workdir) / f"{checkpoint}-int8",
                                                                      quantize="int8"),
                       "int8 (per tensor)": per_tensor_int8(fp32, Path(workdir) / f"{checkpoint}-int8-tensor")}
            for kind in embedding_kinds(model.config):
                for name, smiles in sets.items():
                    reference = embed_smiles(model, tokenizer, smiles, kind=kind, on_invalid="ignore",
                                             on_too_long="truncate")
                    for label, folder in exports.items():
                        vectors = ONNXEmbedder(folder).embed(smiles, kind=kind, on_invalid="ignore",
                                                             on_too_long="truncate")
                        cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / \
                            np.linalg.norm(reference, axis=1)
                        key = f"{checkpoint}/{label}/{kind}/{name}"
                        results[key] = {"min": float(cos.min()), "mean": float(cos.mean()), "n": len(smiles)}
                        rows.append(f"| {checkpoint} | {label} | {kind} | {name} ({len(smiles)}) | {cos.min():.6f} | "
                                    f"{cos.mean():.6f} |")
                        print(rows[-1], flush=True)
    command = f"OMP_NUM_THREADS=1 .venv/bin/python results/onnx/agreement.py --moses {args.moses}"
    out = Path(__file__).parent
    (out / "agreement.md").write_text(f"# ONNX vs torch: cosine of each embedding row\n\n`{command}`\n\n"
                                      + "\n".join(rows) + "\n")
    (out / "agreement.json").write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
