"""The peer implementations of benchmarks/bench_peers.py compute the losses they are compared with.

The reference-style functions are benchmark code; their timings mean something only if their values
and gradients are mlsupcon's (float64, small random batches), for the issue 21 losses with the option
that matches each original (``legacy=True``, ``empty_rows="count"``). The pytorch-metric-learning part needs
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
    # --max-gib 1 skips the (N + C)²·C peers of mscwrg / mscrg (2 GiB here); python-loop peers run at N = 64.
    monkeypatch.setattr(sys, "argv", ["bench_peers.py", "--sizes", "64", "--repeats", "1", "--no-memory",
                                      "--max-gib", "1", "--rows", "all"])
    bench_peers.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == len(bench_peers.ROWS)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[2].startswith("mlsupcon") or cells[1] == "—" or cells[3].startswith(("unavailable", "skipped")):
            continue
        relative = float(cells[7].split("(")[1].rstrip(")"))
        assert relative < 1e-4, line


# ----------------------------------------------------------------------------- issue 21 losses
def _new_case(b: int, v: int, seed: int):
    """A tiny float64 case; every label row non-empty (the Audibert et al. code is NaN otherwise)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, v, 8, generator=g, dtype=torch.float64)
    labels = (torch.rand(b, 6, generator=g) < 0.35).long()
    labels[torch.arange(b), torch.randint(0, 6, (b,), generator=g)] = 1
    labels[1] = labels[0]  # an identical label set (a CL-MTC SCL positive)
    return bench_peers.case_from(feats, labels, icl_labels=4)


@pytest.mark.parametrize("name", sorted(bench_peers.NEW_LOSSES))
@pytest.mark.parametrize("b,v,seed", [(6, 2, 0), (9, 1, 1)])
def test_issue21_reference_style_losses_match_mlsupcon(name, b, v, seed):
    case = _new_case(b, v, seed)
    mine, reference, names = bench_peers.new_loss_functions(name)
    results = []
    for fn in (mine, reference):
        leaves = [case[k] if k in ("y", "y_flat", "y_icl") else case[k].clone().requires_grad_() for k in names]
        value = fn(*leaves)
        value.backward()
        results.append((value.detach(), [leaf.grad for leaf in leaves if leaf.requires_grad]))
    (mine_value, mine_grads), (their_value, their_grads) = results
    assert torch.isfinite(their_value)
    # the Audibert et al. files add EPS = 1e-8 to some denominators: equal to ~1e-8 relative, not 1e-10
    torch.testing.assert_close(their_value.to(mine_value.dtype), mine_value, rtol=1e-7, atol=1e-9)
    for theirs, ours in zip(their_grads, mine_grads):
        torch.testing.assert_close(theirs, ours, rtol=1e-6, atol=1e-8)


def test_issue21_peers_are_skipped_before_they_would_exceed_the_limit():
    labels = torch.ones(512, 597)  # N = 1,024 with Debtags' 597 label columns
    gib = {key: bench_peers.estimated_gib(key, 1024, labels) for key in
           ("ref:jaccard_weight", "ref:msc", "ref:mscwrg", "ml:msc")}
    assert gib["ref:mscwrg"] > gib["ref:msc"] > gib["ref:jaccard_weight"] > 2 and gib["ml:msc"] == 0
    assert bench_peers.LOOP_PEERS <= {key for key, _, _ in bench_peers.ROWS_NEW}
