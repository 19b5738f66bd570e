"""`cmim-hf export`: export a model's embedding forward pass to ONNX (float32, or int8 with --quantize int8), with
its tokenizer and a JSON describing the graph, for ONNX Runtime without torch (see docs/onnx.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..checks import ArgumentParser, check_output_dir, number
from ..modeling.names import EMBEDDING_KINDS
from ..onnx_export import DEFAULT_OPSET, EXPORT_FORMATS, OPSET_RANGE, QUANTIZATIONS  # light: torch and onnx load later
from . import fail, plain_warnings, user_errors


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="cmim-hf export", description=__doc__.split(": ", 1)[1])
    parser.add_argument("model", metavar="MODEL", help="shipped checkpoint name, model folder (cMIM, or a plain "
                                                       "BART/T5 encoder-decoder) or Hub repo id")
    parser.add_argument("output_dir", metavar="OUT_DIR", help="the folder to write (an earlier export there is "
                                                              "replaced; any other non-empty folder is refused)")
    parser.add_argument("--format", default="onnx", choices=EXPORT_FORMATS, help="the export format (default onnx)")
    parser.add_argument("--quantize", default=None, choices=QUANTIZATIONS,
                        help="int8: ONNX Runtime dynamic quantisation (int8 weights); default float32")
    parser.add_argument("--kind", default=None, choices=EMBEDDING_KINDS,
                        help="export only this embedding kind (one output); default every kind the model offers")
    parser.add_argument("--opset", type=number(integer=True, minimum=OPSET_RANGE[0], maximum=OPSET_RANGE[1]),
                        default=DEFAULT_OPSET, help=f"ONNX opset ({OPSET_RANGE[0]}..{OPSET_RANGE[1]}, default "
                                                    f"{DEFAULT_OPSET})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_output_dir(args.output_dir, "OUT_DIR")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        from ..onnx_export import export_onnx, read_onnx_config

        with plain_warnings("export"):
            folder = export_onnx(args.model, args.output_dir, quantize=args.quantize, kind=args.kind,
                                 opset=args.opset, export_format=args.format)
    except (*user_errors(), FileExistsError) as error:
        return fail("export", error)
    config = read_onnx_config(folder)
    outputs = ", ".join(f"{kind} ({width})" for kind, width in config["outputs"].items())
    print(f"exported {args.model} -> {folder} ({args.quantize or 'float32'}; outputs: {outputs})", file=sys.stderr)
    return 0
