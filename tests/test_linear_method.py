"""The ``linear`` method: TF-IDF / standardised features + one-vs-rest linear models, as a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_pipeline import check_run_folder, run_cli, write_jsonl, write_yaml


@pytest.mark.slow
def test_linear_text_run_matches_sklearn_and_reloads(tmp_path):
    """The run's test scores equal a plain scikit-learn fit on the same features, and the
    exported model reproduces them (evaluate)."""
    from sklearn.svm import LinearSVC

    from mlsupcon import load
    from mlsupcon.data import load_dataset
    from mlsupcon.models.text_features import TextFeaturizer

    data = write_jsonl(tmp_path / "d.jsonl", n=120)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{data}", "--method", "linear", "--output", str(out),
                          "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["method"] == "linear" and metrics["loss"] == "linear"
    # your own data: the linear model gets the auto settings' decision rule, and nothing else
    assert "threshold=auto" in err and "encoder=" not in err
    assert metrics["chosen_on_validation"]["threshold_rule"]["cross_validated"]["folds"] == 5

    ds = load_dataset(f"jsonl:{data}")
    train, test = ds.splits["train"], ds.splits["test"]
    fz = TextFeaturizer(max_features=200_000).fit(list(train.inputs))
    xtr, xte = fz.transform(list(train.inputs)), fz.transform(list(test.inputs))
    y = train.labels.toarray()
    model = load(out)
    proba = model.predict_proba(list(test.inputs))
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            ref = LinearSVC(C=0.5, random_state=0).fit(xtr, y[:, j]).decision_function(xte)
            np.testing.assert_allclose(proba[:, j], 1 / (1 + np.exp(-ref)), atol=1e-4)
    from mlsupcon.training.inference import evaluate_model

    again = evaluate_model(out)
    assert abs(again["map"] - metrics["map"]) < 1e-6


def test_linear_vectors_learns(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32) * 10 + 50
    y = np.stack([x[:, 0] > 50, x[:, 1] > 52, x[:, 0] + x[:, 2] > 100], 1).astype(np.uint8)
    split = np.array(["train"] * 200 + ["validation"] * 50 + ["test"] * 50)
    np.savez(tmp_path / "v.npz", x=x, y=y, label_names=np.array(["a", "b", "c"]), split=split)
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", f"vectors:{tmp_path / 'v.npz'}", "--method", "linear",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["map"] > 0.9  # separable labels: a linear model must rank them almost perfectly


def test_linear_bad_option_is_one_line(tmp_path):

    from mlsupcon.training.config import load_config

    with pytest.raises(ValueError, match="linear_options.estimator"):
        load_config(overrides={"method": "linear", "linear_options": {"estimator": "tree"}})
    with pytest.raises(ValueError, match="linear_options: unknown"):
        load_config(overrides={"method": "linear", "linear_options": {"alpha": 1}})


# ---------------------------------------------------------------------------------------------
# Images: standardised pixels + one-vs-rest logistic regression (the ``pixels`` encoder).
# ---------------------------------------------------------------------------------------------

_IMAGE_LABELS = ["person", "car", "cat", "dog"]


def _write_image_set(root, n=80, seed=0):
    """A COCO-format folder of small RGB PNGs of varied sizes; label j brightens quadrant j of
    channel j % 3 (linearly separable pixels). Returns the dataset spec."""
    import json

    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(14, 22, size=2))
        arr = rng.integers(0, 90, size=(h, w, 3)).astype(np.uint8)
        cats = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
        for j in cats.tolist():
            r0, c0 = (j // 2) * (h // 2), (j % 2) * (w // 2)
            arr[r0:r0 + h // 2, c0:c0 + w // 2, j % 3] += 140
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": j + 1, "bbox": [0, 0, 1, 1]})
        Image.fromarray(arr).save(root / "images" / f"{i + 1:04d}.png")
        images.append({"id": i + 1, "file_name": f"{i + 1:04d}.png", "width": w, "height": h})
    categories = [{"id": j + 1, "name": name, "supercategory": "x"} for j, name in enumerate(_IMAGE_LABELS)]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return f"coco:{ann}:{root / 'images'}"


def _pixel_matrix(split):
    """Independent of the encoder: the split's images as read by the dataset, channel-major, in
    [0, 1] (8-bit values / 255 in single precision, as images are read)."""
    arr = np.stack([split.inputs[i] for i in range(len(split))]).astype(np.float32) / 255.0
    return arr.transpose(0, 3, 1, 2).reshape(len(split), -1)


def _sklearn_scores(train, test, xtr, xte):
    """Sigmoid of scikit-learn's one-vs-rest LogisticRegression decision values (NaN for labels
    without both classes in train), on the standardised pixels ``xtr`` / ``xte``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from mlsupcon.training.methods.linear import IMAGE_DEFAULTS

    C = IMAGE_DEFAULTS["C"]

    xtr, xte = np.asarray(xtr, dtype=np.float64), np.asarray(xte, dtype=np.float64)
    scaler = StandardScaler().fit(xtr)
    y = train.labels.toarray()
    out = np.full((len(test), y.shape[1]), np.nan)
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            lr = LogisticRegression(C=C, solver="lbfgs", max_iter=1000).fit(scaler.transform(xtr), y[:, j])
            out[:, j] = 1 / (1 + np.exp(-lr.decision_function(scaler.transform(xte))))
    return out


def test_linear_images_match_sklearn_and_reload(tmp_path):
    """RGB image files: the scores are scikit-learn's LogisticRegression on the standardised
    pixels; mlsupcon.load, evaluate, predict and export give the run's scores back."""
    import json

    from mlsupcon import load
    from mlsupcon.data import load_dataset
    from mlsupcon.evaluation import compute_metrics
    from mlsupcon.training.inference import evaluate_model

    spec = _write_image_set(tmp_path / "imgs")
    cfg = write_yaml(tmp_path / "c.yaml", {"dataset_options": {"image_size": 12},
                                           "linear_options": {"pixels": {"size": 12}}})
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", spec, "--method", "linear",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["method"] == "linear" and metrics["map"] > 0.9  # separable by construction
    encoder = json.loads((out / "model" / "model.json").read_text())["encoder"]
    assert encoder == {"name": "pixels", "image_size": 12, "grayscale": False, "out_dim": 4}

    ds = load_dataset(spec, image_size=12)
    train, test = ds.splits["train"], ds.splits["test"]
    ref = _sklearn_scores(train, test, _pixel_matrix(train), _pixel_matrix(test))
    model = load(out)
    proba = model.predict_proba(test.inputs.paths)  # files, resized as the training data was
    fitted = ~np.isnan(ref[0])
    assert fitted.sum() >= 3
    np.testing.assert_allclose(proba[:, fitted], ref[:, fitted], atol=1e-4)
    # The run's test scores: metrics.json is reproduced from them exactly.
    again = compute_metrics(test.labels.toarray(), proba, model.threshold)
    for key in ("map", "micro_f1", "macro_f1", "micro_auc"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6), key
    # Arrays score as the files do; evaluate agrees with the run.
    arrays = [test.inputs[i] for i in range(len(test))]
    np.testing.assert_allclose(model.predict_proba(arrays), proba, atol=1e-6)
    assert evaluate_model(out)["map"] == pytest.approx(metrics["map"], abs=1e-6)

    # predict on a folder of images, and a self-contained export that loads elsewhere.
    folder = tmp_path / "new"
    folder.mkdir()
    for p in test.inputs.paths:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    rc, _, err = run_cli(["predict", str(out), "--input", str(folder), "--output", str(tmp_path / "p.jsonl"),
                          "--threshold", "0.5", "--no-progress"])
    assert rc == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    order = np.argsort([Path(p).name for p in test.inputs.paths])
    assert [sorted(r["labels"]) for r in rows] == [sorted(model.labels[j] for j in np.flatnonzero(proba[i] >= 0.5))
                                                   for i in order]
    rc, _, err = run_cli(["export", str(out), "--format", "mlsupcon", "--output", str(tmp_path / "exp")])
    assert rc == 0, err
    np.testing.assert_allclose(load(tmp_path / "exp").predict_proba(arrays), proba, atol=1e-6)


def _fashion_available() -> bool:
    from mlsupcon.data.fashion import DEFAULT_FASHION_ROOT

    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    return all((Path(DEFAULT_FASHION_ROOT) / f"{s}.gz").is_file() or (Path(DEFAULT_FASHION_ROOT) / s).is_file()
               for s in stems)


@pytest.mark.skipif(not _fashion_available(), reason="Debian package dataset-fashion-mnist not installed "
                                                     "(scripts/setup.sh installs it)")
def test_linear_fashion_mosaic_greyscale_pixels(tmp_path):
    """fashion-mosaic: greyscale (one channel, not three copies) at the preset's image size 56,
    equal to scikit-learn on the standardised pixels; greyscale and RGB arrays score the same."""
    import json

    from mlsupcon import load
    from mlsupcon.data import load_dataset

    sizes = {"train_size": 100, "validation_size": 20, "test_size": 20}
    cfg = write_yaml(tmp_path / "c.yaml", {"dataset_options": sizes})
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", "fashion-mosaic", "--method", "linear",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    metrics = check_run_folder(out)
    assert metrics["map"] > 0.4  # 10 labels, chance is ~0.25 (2.5 labels per mosaic)
    encoder = json.loads((out / "model" / "model.json").read_text())["encoder"]
    assert encoder == {"name": "pixels", "image_size": 56, "grayscale": True, "out_dim": 10}

    ds = load_dataset("fashion-mosaic", **sizes)
    train, test = ds.splits["train"], ds.splits["test"]
    grey = test.inputs.array  # [n, 56, 56] uint8, as stored
    ref = _sklearn_scores(train, test, train.inputs.array.reshape(len(train), -1).astype(np.float32) / 255.0,
                          grey.reshape(len(test), -1).astype(np.float32) / 255.0)
    model = load(out)
    proba = model.predict_proba(grey)
    fitted = ~np.isnan(ref[0])
    assert fitted.sum() == 10
    np.testing.assert_allclose(proba, ref, atol=1e-4)
    np.testing.assert_allclose(model.predict_proba(np.repeat(grey[..., None], 3, axis=-1)), proba, atol=1e-6)


def test_linear_images_in_compare(tmp_path):
    """compare: a linear (pixels) row next to bce on the same pixels encoder; the linear row
    resizes to the documented default side (32) when no image size is given."""
    import csv
    import json

    from mlsupcon.training.methods.linear import DEFAULT_PIXEL_SIZE

    spec = _write_image_set(tmp_path / "imgs", n=60)
    cfg = write_yaml(tmp_path / "c.yaml", {"dataset_options": {"image_size": 12}})
    out = tmp_path / "cmp"
    rc, _, err = run_cli(["compare", "--config", str(cfg), "--dataset", spec, "--encoder", "pixels",
                          "--losses", "linear,bce", "--seeds", "1", "--epochs", "1", "--batch-size", "16",
                          "--output", str(out), "--no-progress"])
    assert rc == 0, err
    with open(out / "results.csv") as fh:
        rows = {r["loss"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == ["bce", "linear"] and rows["linear"]["method"] == "linear"
    for name in rows:
        check_run_folder(out / name / "seed0")
    encoder = json.loads((out / "linear" / "seed0" / "model" / "model.json").read_text())["encoder"]
    assert encoder["image_size"] == DEFAULT_PIXEL_SIZE and encoder["out_dim"] == 4
    assert "| linear " in (out / "report.md").read_text()


def test_pixel_encoder_rebuilds_and_reads_every_image_form():
    import torch
    from PIL import Image

    from mlsupcon.models import build_encoder

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(3, 10, 14, 3), dtype=np.uint8)
    enc = build_encoder("pixels", image_size=6, out_dim=2)
    same = build_encoder(**enc.config())
    same.load_state_dict(enc.state_dict())
    batch = enc.preprocess(imgs)
    assert batch["pixel_values"].shape == (3, 3, 6, 6)
    assert torch.equal(same(batch), enc(batch))
    # A list of PIL images and a list of arrays give the same batch.
    pil = enc.preprocess([Image.fromarray(a) for a in imgs])
    assert torch.equal(pil["pixel_values"], batch["pixel_values"])
    grey = build_encoder("pixels", image_size=10, grayscale=True)
    g = grey.encode(imgs[:, :, :10])  # already 10x10: no resizing
    np.testing.assert_allclose(g.numpy(), imgs[:, :, :10].mean(axis=-1).reshape(3, -1) / 255.0, atol=1e-6)
    for bad, needle in (({"image_size": 0}, "image_size"), ({"grayscale": "yes"}, "grayscale"),
                        ({"out_dim": 0}, "out_dim")):
        with pytest.raises(ValueError, match=needle):
            build_encoder("pixels", **bad)


def test_linear_pixel_options_are_checked(tmp_path):
    from fixtures_pipeline import assert_user_error

    from mlsupcon.training.config import load_config

    cases = [({"pixels": {"side": 28}}, "linear_options.pixels: unknown"),
             ({"pixels": {"size": 0}}, "linear_options.pixels.size"),
             ({"pixels": {"grayscale": "yes"}}, "linear_options.pixels.grayscale"),
             ({"pixels": 28}, "linear_options.pixels: expected a mapping"),
             ({"solver": "sag"}, "linear_options.solver")]
    for options, needle in cases:
        with pytest.raises(ValueError, match=needle):
            load_config(overrides={"method": "linear", "linear_options": options})
    data = write_jsonl(tmp_path / "d.jsonl", n=60)
    cfg = write_yaml(tmp_path / "c.yaml", {"linear_options": {"pixels": {"size": 28}}})
    rc, _, err = run_cli(["train", "--config", str(cfg), "--dataset", f"jsonl:{data}", "--method", "linear",
                          "--output", str(tmp_path / "run"), "--no-progress"])
    assert_user_error(rc, err, "linear_options.pixels", "only for image data", "text")
    assert not (tmp_path / "run").exists()
