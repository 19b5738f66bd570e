"""Where ONNX Runtime spends the time of an embedding, by operator, with its own profiler (one thread).

    OMP_NUM_THREADS=1 .venv/bin/python results/onnx/profile_ort.py [--model cmim-moses-tiny] [--quantize int8]

Exports the checkpoint, embeds `--molecules` MOSES molecules through `ONNXEmbedder` (batches of 64) with
`SessionOptions.enable_profiling`, and writes the share of kernel time per operator type to
profile_<model>[-int8].txt next to this file.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cmim-moses-tiny")
    parser.add_argument("--quantize", default=None, choices=("int8",))
    parser.add_argument("--molecules", type=int, default=1024)
    args = parser.parse_args(argv)
    import onnxruntime

    from cmim_hf.data import moses_data_dir
    from cmim_hf.onnx_backend import ONNXEmbedder
    from cmim_hf.onnx_export import export_onnx

    with gzip.open(moses_data_dir() / "train.csv.gz", "rt") as handle:
        next(handle)
        smiles = [next(handle).strip().split(",")[0] for _ in range(args.molecules)]
    with tempfile.TemporaryDirectory() as workdir:
        embedder = ONNXEmbedder(export_onnx(args.model, Path(workdir) / "export", quantize=args.quantize), threads=1)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(workdir) / "profile")
        embedder.session = onnxruntime.InferenceSession(str(embedder.folder / "model.onnx"), options,
                                                        providers=["CPUExecutionProvider"])
        embedder.embed(smiles[:64], on_invalid="ignore")  # warm-up, in the profile too (a small share)
        embedder.embed(smiles, on_invalid="ignore")
        events = json.loads(Path(embedder.session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    command = (f"OMP_NUM_THREADS=1 .venv/bin/python results/onnx/profile_ort.py --model {args.model} --molecules "
               f"{args.molecules}" + (f" --quantize {args.quantize}" if args.quantize else ""))
    lines = [command, "", f"kernel time {total / 1e6:.2f} s for {args.molecules + 64} molecules (one thread)", "",
             f"{'operator':28s} {'ms':>9s} {'share':>6s}"]
    lines += [f"{op:28s} {us / 1e3:9.1f} {100 * us / total:5.1f}%" for op, us in per_op.most_common()]
    name = f"profile_{args.model}{'-' + args.quantize if args.quantize else ''}.txt"
    (Path(__file__).parent / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:16]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
