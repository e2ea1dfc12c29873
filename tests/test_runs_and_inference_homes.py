"""Issue 20's homes of the run folder (mlsupcon.runs) and of a trained model (mlsupcon.inference):
using a model imports no training code, the old module paths still work (deprecated), and
results.csv names each compare row's method and contrastive loss."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from mlsupcon.runs.report import read_results, results_csv, results_table, row_names

_USE_A_MODEL = """
import sys
import numpy as np
import mlsupcon
from mlsupcon.inference import export_portable

model = mlsupcon.load(sys.argv[1])
x = np.ones((3, 4), dtype=np.float32)
print(model.predict(x), model.predict_proba(x).shape, model.embed(x).shape, model.embed(x, "encoder").shape)
export_portable(sys.argv[1], sys.argv[2])
print(mlsupcon.load(sys.argv[2]).predict_proba(x).shape)
print("training:", [m for m in sys.modules if m.startswith("mlsupcon.training")])
"""


def _model_folder(folder):
    from mlsupcon.inference.storage import save_classifier
    from mlsupcon.models import Classifier, ProjectionHead, build_encoder, build_head

    enc = build_encoder("mlp", in_dim=4, hidden_dims=(8,))
    model = Classifier(enc, build_head("linear", enc, 3), projection=ProjectionHead(enc.output_dim))
    save_classifier(model, folder, {"label_names": ["a", "b", "c"], "threshold": 0.5})
    return model


def test_using_a_model_imports_no_training_module(tmp_path):
    _model_folder(tmp_path / "exported")
    p = subprocess.run([sys.executable, "-c", _USE_A_MODEL, str(tmp_path / "exported"), str(tmp_path / "copy")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].endswith(" (3, 8)") and " (3, 3) " in lines[0] and lines[1] == "(3, 3)"
    assert lines[-1] == "training: []"


_CLI_PREDICT_EMBED_EVALUATE = """
import sys
import numpy as np
from mlsupcon.cli.main import main

folder, data, out = sys.argv[1:]
np.savez(data, x=np.ones((6, 4), dtype=np.float32), y=np.eye(3, dtype=np.uint8)[[0, 1, 2, 0, 1, 2]],
         label_names=np.array(["a", "b", "c"]), split=np.array(["train", "validation", "test"] * 2))
for argv in (["predict", folder, "--input", data, "--output", out + ".jsonl", "--no-progress"],
             ["embed", folder, "--input", data, "--output", out + ".npz", "--no-progress"],
             ["evaluate", folder, "--dataset", "vectors:" + data, "--no-progress"]):
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    assert rc in (0, None), (argv, rc)
print("training:", [m for m in sys.modules if m.startswith("mlsupcon.training")])
"""


def test_the_cli_commands_that_use_a_model_import_no_training_module(tmp_path):
    _model_folder(tmp_path / "exported")
    p = subprocess.run([sys.executable, "-c", _CLI_PREDICT_EMBED_EVALUATE, str(tmp_path / "exported"),
                        str(tmp_path / "v.npz"), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "training: []"
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 6 and (tmp_path / "out.npz").is_file()


@pytest.mark.parametrize("old, new, name", [
    ("mlsupcon.training.io", "mlsupcon.runs.io", "atomic_write_text"),
    ("mlsupcon.training.output_folder", "mlsupcon.runs.folder", "check_run_output"),
    ("mlsupcon.training.run_folder", "mlsupcon.runs.folder", "start_run_folder"),
    ("mlsupcon.training.inference", "mlsupcon.inference.model", "TrainedModel"),
    ("mlsupcon.training.export", "mlsupcon.inference.storage", "load_classifier"),
    ("mlsupcon.training.portable_export", "mlsupcon.inference.export", "export_hf"),
])
def test_old_paths_are_deprecated_aliases_of_the_new_homes(old, new, name):
    import importlib

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and new.rsplit(".", 1)[0] in str(w.message)
               for w in caught)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_trained_model_scores_as_the_classifier_does(tmp_path):
    import torch

    from mlsupcon.inference.model import load

    model = _model_folder(tmp_path / "model").eval()
    x = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    trained = load(tmp_path / "model")
    with torch.no_grad():
        expected = torch.sigmoid(model.logits(model.preprocess(x))).numpy()
    np.testing.assert_array_equal(trained.predict_proba(x, progress=False), expected)  # one batch: bit for bit
    np.testing.assert_allclose(trained.predict_proba(x, batch_size=3, progress=False), expected, rtol=1e-6)


def test_results_csv_names_the_row_its_method_and_its_contrastive_loss(tmp_path):
    from mlsupcon.config import TrainConfig
    from mlsupcon.training.compare import result_names

    bce = {**result_names("bce", 0, TrainConfig(method="bce")), "map": 0.5}
    simdis = {**result_names("simdis", 0, TrainConfig(method="two-stage", loss="simdis")), "map": 0.7}
    assert bce["method"] == "bce" and bce["contrastive_loss"] == ""
    assert simdis["method"] == "two-stage" and simdis["contrastive_loss"] == "simdis"
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "results.csv").write_text(results_csv([bce, simdis]))
    header = (tmp_path / "new" / "results.csv").read_text().splitlines()[0]
    assert header == "row,seed,method,contrastive_loss,loss,map"
    # A file written before the row column: its loss column names the rows.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.csv").write_text("loss,seed,method,map\nkmcl,0,kmcl,0.4\n")
    rows = read_results([tmp_path / "new", tmp_path / "old"])
    assert row_names(rows) == ["bce", "simdis", "kmcl"] and [r["loss"] for r in rows] == ["bce", "simdis", "kmcl"]
    table = results_table(rows, row_names(rows), ["map"], note=False).splitlines()
    assert table[2:] == ["| bce | 1 | 50.00 |", "| simdis | 1 | 70.00 |", "| kmcl | 1 | 40.00 |"]


def test_dataset_option_defaults():
    from mlsupcon.data.registry import dataset_option_defaults

    assert dataset_option_defaults("fashion-mosaic")["image_size"] is None
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        dataset_option_defaults("nope")


def test_the_artefact_list_names_what_a_run_writes():
    from mlsupcon.runs.folder import RUN_ARTEFACTS

    assert RUN_ARTEFACTS == ("config.yaml", "environment.json", "metrics.json", "model", "checkpoints", "logs",
                             "embeddings_test.npz")


def test_loading_skips_random_initialisation_and_restores_it(tmp_path):
    import torch

    from mlsupcon.inference.model import load

    model = _model_folder(tmp_path / "model").eval()
    before = {n: getattr(torch.nn.init, n) for n in ("normal_", "uniform_", "kaiming_uniform_")}
    state = torch.random.get_rng_state()
    trained = load(tmp_path / "model")
    assert torch.equal(torch.random.get_rng_state(), state)  # no random draw while rebuilding
    assert all(getattr(torch.nn.init, n) is f for n, f in before.items())
    for (name, a), (_, b) in zip(model.state_dict().items(), trained.classifier.state_dict().items()):
        assert torch.equal(a, b), name
