"""Texts/s of the frozen encoder (int8) on EUR-Lex documents at several max_length."""
import sys
import time

from mlsupcon.data import load_dataset
from mlsupcon.models import build_encoder

ds = load_dataset("eurlex-sum")
texts = list(ds.splits["train"].inputs)[:120]
for L in [int(x) for x in sys.argv[1:]]:
    enc = build_encoder("frozen", max_length=L, runtime="onnx-int8", progress=False, hidden_dims=[])
    enc.embed(texts[:8])
    t = time.perf_counter()
    enc.embed(texts)
    dt = time.perf_counter() - t
    print(f"max_length {L}: {len(texts)/dt:.1f} texts/s ({len(texts)} texts, {dt:.1f} s)", flush=True)
