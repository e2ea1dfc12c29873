"""The peer implementations of benchmarks/bench_peers.py compute the losses they are compared with.

The reference-style functions are benchmark code; their timings mean something only if their values
and gradients are mlsupcon's (float64, small random batches). The pytorch-metric-learning part needs
the ``bench`` extra.
"""

import sys
from pathlib import Path

import pytest
import torch

from mlsupcon.losses import build

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_peers  # noqa: E402


def _batch(b: int, v: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, v, 16, generator=g, dtype=torch.float64)
    labels = (torch.rand(b, 9, generator=g) < 0.25).long()
    labels[0] = 0  # an unlabelled sample (the same-sample rule / MulSupCon's own-views row)
    labels[1, 8], labels[2:, 8] = 1, 0  # a label held by one sample only
    return feats, labels


def _value_and_grad(fn, feats, labels):
    f = feats.clone().requires_grad_()
    loss = fn(f, labels)
    loss.backward()
    return loss.detach(), f.grad


@pytest.mark.parametrize("name", ["any", "mulsupcon", "simdis"])
@pytest.mark.parametrize("b,v,seed", [(16, 2, 0), (32, 2, 1), (21, 3, 2), (48, 1, 3)])
def test_reference_style_losses_match_mlsupcon(name, b, v, seed):
    feats, labels = _batch(b, v, seed)
    reference = {"any": bench_peers.reference_any, "mulsupcon": bench_peers.reference_mulsupcon,
                 "simdis": bench_peers.reference_simdis}[name]
    mine, mine_grad = _value_and_grad(build(name, temperature=0.1), feats, labels)
    theirs, their_grad = _value_and_grad(reference, feats, labels)
    assert torch.isfinite(theirs) and theirs > 0
    torch.testing.assert_close(theirs, mine, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(their_grad, mine_grad, rtol=1e-8, atol=1e-10)


def test_reference_mulsupcon_is_not_any():
    # Guards against a reference that silently reduces to ANY (both have the same positives per anchor).
    feats, labels = _batch(32, 2, 4)
    assert abs(bench_peers.reference_mulsupcon(feats, labels) - bench_peers.reference_any(feats, labels)) > 1e-3


def test_pytorch_metric_learning_supcon_matches_mlsupcon():
    pytest.importorskip("pytorch_metric_learning")
    feats, labels = _batch(32, 2, 5)
    ids = bench_peers.class_ids(labels)
    mine, mine_grad = _value_and_grad(lambda f, y: build("supcon", temperature=0.1)(f, y), feats, ids)
    theirs, their_grad = _value_and_grad(bench_peers.pml_supcon, feats, ids)
    torch.testing.assert_close(theirs.to(mine.dtype), mine, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(their_grad, mine_grad, rtol=1e-8, atol=1e-10)


def test_dense_peers_are_skipped_before_they_would_exceed_the_limit():
    labels = torch.ones(8192, 4)  # N = 16,384 with 4 labels per sample
    assert bench_peers.estimated_gib("pml:supcon", 16384, labels) > 8
    gib = {key: bench_peers.estimated_gib(key, 16384, labels) for key in ("ref:any", "ref:mulsupcon", "ml:any")}
    assert gib["ref:mulsupcon"] > gib["ref:any"] > 0 == gib["ml:any"]


def test_script_prints_one_row_per_function_with_small_differences(monkeypatch, capsys):
    # In-process (a subprocess would pay the imports again); --no-memory keeps it so.
    monkeypatch.setattr(sys, "argv", ["bench_peers.py", "--sizes", "64", "--repeats", "1", "--no-memory"])
    bench_peers.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == len(bench_peers.ROWS)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[2] == "mlsupcon" or cells[1] == "—" or cells[3].startswith("unavailable"):
            continue
        relative = float(cells[7].split("(")[1].rstrip(")"))
        assert relative < 1e-4, line
