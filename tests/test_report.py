"""`mlsupcon report`: one table from several compare folders."""

from mlsupcon.cli.main import main
from mlsupcon.training.compare import BEST_RULE


def _write(path, rows):
    path.mkdir(parents=True)
    lines = ["loss,seed,method,map,micro_f1"] + [",".join(map(str, r)) for r in rows]
    (path / "results.csv").write_text("\n".join(lines) + "\n")


def test_report_merges_folders_and_computes_mean_std(tmp_path, capsys):
    _write(tmp_path / "a", [("bce", 0, "bce", 0.5, 0.6), ("bce", 1, "bce", 0.7, 0.8)])
    _write(tmp_path / "b", [("kmcl", 0, "kmcl", 0.4, 0.1)])
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--metrics", "map,micro_f1"]) == 0
    out = capsys.readouterr().out.splitlines()
    bce = next(l for l in out if l.startswith("| bce"))
    kmcl = next(l for l in out if l.startswith("| kmcl"))
    # mean 0.6, sample std 0.1414 → ×100
    assert "| 2 |" in bce and "| 60.00 ± 14.14 |" in bce and "| 70.00 ± 14.14 |" in bce
    assert "| 1 |" in kmcl and "| 40.00 |" in kmcl and "±" not in kmcl  # one seed: no spread
    # kmcl has one seed, so no lead can be told from noise: nothing is bold, and the rule says so
    assert "**" not in "\n".join(out) and BEST_RULE in out


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlsupcon: error:") and "results.csv" in err and "Traceback" not in err
    _write(tmp_path / "a", [("bce", 0, "bce", 0.5, 0.6)])
    assert main(["report", str(tmp_path / "a"), "--metrics", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
