"""int8 ONNX embeddings depend on how molecules are batched: quantize_dynamic computes activation scales per batch.
Run: OMP_NUM_THREADS=1 python results/onnx/int8_batching.py"""
import numpy as np, tempfile
from cmim_hf.onnx_export import export_onnx
from cmim_hf.onnx_backend import ONNXEmbedder
from cmim_hf.data import load_named_dataset
smiles = list(load_named_dataset("moses", split="test", max_samples=512, seed=0)["text"])
d = tempfile.mkdtemp()
e = ONNXEmbedder(export_onnx("cmim-moses-tiny", d + "/int8", quantize="int8"))
a = e.embed(smiles, batch_size=64, on_invalid="ignore"); b = e.embed(smiles, batch_size=1, on_invalid="ignore")
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"int8 tiny, 512 MOSES test molecules, batch 64 vs batch 1: max abs diff {np.abs(a-b).max():.4f}, min cosine {cos.min():.6f}, mean cosine {cos.mean():.6f}")
