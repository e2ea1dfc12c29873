"""The ``vectors:PATH`` dataset: precomputed feature vectors in a .npz file, and every error."""

import numpy as np
import pytest

from mlsupcon.data import load_dataset, seeded_split
from mlsupcon.data.precomputed import load_vectors

N, F = 40, 5


def features(n=N, f=F, seed=0):
    return np.random.default_rng(seed).normal(size=(n, f))


def write(tmp_path, name="emb.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def split_array(n=N):
    return np.array((["train"] * 6 + ["val", "test"]) * (n // 8))


def test_multi_hot_with_names_split_and_ids(tmp_path):
    x = features()
    y = (np.random.default_rng(1).random((N, 3)) < 0.4).astype(np.int64)
    ids = np.array([f"doc{i}" for i in range(N)])
    path = write(tmp_path, x=x, y=y, label_names=np.array(["a::x", "a::y", "b::z"]), split=split_array(), ids=ids)
    ds = load_dataset(f"vectors:{path}")
    assert ds.modality == "vector" and ds.label_names == ["a::x", "a::y", "b::z"]
    assert [len(ds.splits[k]) for k in ("train", "validation", "test")] == [30, 5, 5]
    train = ds.splits["train"]
    rows = np.flatnonzero(split_array() == "train")
    assert train.inputs.dtype == np.float32 and train.inputs.shape == (30, F)
    np.testing.assert_allclose(train.inputs, x[rows].astype(np.float32))
    assert np.array_equal(train.label_array(), y[rows].astype(np.float32))
    assert train.ids == [f"doc{i}" for i in rows]
    assert ds.info["split"] == {"seeded": False} and ds.info["label_format"] == "y"
    assert ds.hierarchy is not None and ds.hierarchy.coarse_of("b::z") == "b"  # facets, like jsonl


def test_default_names_bool_labels_and_ignored_arrays(tmp_path):
    y = np.zeros((N, 2), dtype=bool)
    y[::2, 0] = True
    path = write(tmp_path, x=features().astype(np.int32), y=y, notes=np.arange(3))
    ds = load_vectors(str(path))
    assert ds.label_names == ["label0", "label1"] and ds.info["ignored_arrays"] == ["notes"]
    assert sum(int(s.labels.sum()) for s in ds.splits.values()) == N // 2


@pytest.mark.parametrize("sep", ["|", ";"])
def test_joined_label_strings(tmp_path, sep):
    raw = np.array([f"cat{sep}dog", "dog", "", f" bird {sep}cat"] * (N // 4))
    ds = load_vectors(str(write(tmp_path, x=features(), labels=raw)))
    assert ds.label_names == ["bird", "cat", "dog"] and ds.info["label_format"] == "labels"
    whole = np.concatenate([ds.splits[k].ids for k in ("train", "validation", "test")]).astype(int)
    lists = {int(i): labs for k in ("train", "validation", "test")
             for i, labs in zip(ds.splits[k].ids, ds.splits[k].label_lists(ds.label_names))}
    assert sorted(whole) == list(range(N))
    assert lists[0] == ["cat", "dog"] and lists[2] == [] and lists[3] == ["bird", "cat"]


def test_explicit_separator_fixed_vocabulary_and_2d_string_labels(tmp_path):
    raw = np.array(["a,b", "b"] * (N // 2))
    ds = load_vectors(str(write(tmp_path, x=features(), labels=raw)), label_separator=",")
    assert ds.label_names == ["a", "b"]
    fixed = write(tmp_path, "fixed.npz", x=features(), labels=np.array(["a", "b"] * (N // 2)),
                  label_names=np.array(["b", "a", "never"]))
    assert load_vectors(str(fixed)).label_names == ["b", "a", "never"]
    padded = np.array([["a", "b"], ["c", ""]] * (N // 2))
    ds2 = load_vectors(str(write(tmp_path, "pad.npz", x=features(), labels=padded)))
    assert ds2.label_names == ["a", "b", "c"]
    counts = sum(s.label_counts() for s in ds2.splits.values())
    assert counts.tolist() == [N // 2, N // 2, N // 2]


def test_object_label_lists_need_allow_pickle(tmp_path):
    lists = np.empty(N, dtype=object)
    for i in range(N):
        lists[i] = ["x", "y"] if i % 2 else ["y"]
    path = write(tmp_path, x=features(), labels=lists)
    with pytest.raises(ValueError, match=r"array 'labels' is an object array.*allow_pickle=True"):
        load_vectors(str(path))
    ds = load_vectors(str(path), allow_pickle=True)
    assert ds.label_names == ["x", "y"]
    assert sum(s.label_counts() for s in ds.splits.values()).tolist() == [N // 2, N]


def test_seeded_split_reuses_the_jsonl_helper_and_standardize(tmp_path):
    x = features() * 3 + 7
    path = write(tmp_path, x=x, labels=np.array(["a"] * N))
    for seed in (0, 5):
        ds = load_dataset(f"vectors:{path}", seed=seed)
        want = seeded_split(N, seed)
        for k in ("train", "validation", "test"):
            assert ds.splits[k].ids == [str(i) for i in want[k]]
        assert ds.info["split"] == {"seeded": True, "seed": seed, "fractions": [0.8, 0.1, 0.1]}
    std = load_vectors(str(path), standardize=True)
    train = std.splits["train"].inputs
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-4)
    assert len(std.info["feature_mean"]) == F
    small = load_dataset(f"vectors:{path}", max_examples_per_split=3, split_fractions=[0.5, 0.25, 0.25])
    assert [len(small.splits[k]) for k in ("train", "validation", "test")] == [3, 3, 3]


def _expect(tmp_path, match, exc=ValueError, name="bad.npz", options=None, **arrays):
    path = write(tmp_path, name, **arrays) if arrays else tmp_path / name
    with pytest.raises(exc, match=match) as info:
        load_vectors(str(path), **(options or {}))
    assert str(path) in str(info.value)  # every error names the file
    return str(info.value)


def test_file_errors(tmp_path):
    _expect(tmp_path, "vectors file not found", FileNotFoundError, name="missing.npz")
    np.save(tmp_path / "x.npy", features())
    _expect(tmp_path, r"expected a \.npz archive .* got a '\.npy' file", name="x.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    _expect(tmp_path, "not a readable .npz archive", name="junk.npz")
    # A truncated archive (a copy cut short) is caught too.
    good = write(tmp_path, "good.npz", x=features(), labels=np.array(["a"] * N))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    _expect(tmp_path, "not a readable|could not be read", name="cut.npz")


def test_feature_errors(tmp_path):
    labels = np.array(["a"] * N)
    _expect(tmp_path, r"missing array 'x'", features=features(), labels=labels)
    _expect(tmp_path, r"array 'x' must hold numbers", x=np.array(["1"] * N), labels=labels)
    _expect(tmp_path, r"array 'x' must be 2-D \[n, F\].*shape \(40,\)", x=np.ones(N), labels=labels)
    _expect(tmp_path, r"array 'x' must be 2-D.*shape \(40, 0\)", x=np.ones((N, 0)), labels=labels)
    x = features()
    x[3, 1], x[7, 0] = np.nan, np.inf
    msg = _expect(tmp_path, r"array 'x' has NaN or infinite values in row\(s\) 3, 7 \(of 40\)", x=x, labels=labels)
    assert "expected finite" in msg
    huge = features()
    huge[5, 2] = 1e300  # finite in float64, inf in float32
    _expect(tmp_path, r"row\(s\) 5 \(of 40\)", x=huge, labels=labels)


def test_label_errors(tmp_path):
    x = features()
    y = np.zeros((N, 2))
    _expect(tmp_path, r"missing labels: expected array 'y' \[n, C\] or 'labels'", x=x)
    _expect(tmp_path, r"both arrays 'y' and 'labels'", x=x, y=y, labels=np.array(["a"] * N))
    _expect(tmp_path, r"array 'y' must be 2-D multi-hot.*shape \(40,\)", x=x, y=np.zeros(N))
    _expect(tmp_path, r"array 'y' has 39 rows, but 'x' has 40", x=x, y=np.zeros((N - 1, 2)))
    bad = y.copy()
    bad[4, 1] = 0.5
    _expect(tmp_path, r"array 'y' must hold only 0/1, see row\(s\) 4", x=x, y=bad)
    _expect(tmp_path, r"array 'y' must be multi-hot numbers", x=x, y=np.full((N, 2), "1"))
    _expect(tmp_path, r"array 'label_names' has 3 names, but 'y' has 2 columns",
            x=x, y=y, label_names=np.array(["a", "b", "c"]))
    _expect(tmp_path, r"array 'label_names' repeats \['a'\]", x=x, y=y, label_names=np.array(["a", "a"]))
    _expect(tmp_path, r"array 'label_names' must hold non-empty strings", x=x, y=y, label_names=np.array(["a", " "]))
    _expect(tmp_path, r"array 'labels' has 39 entries, but 'x' has 40 rows", x=x, labels=np.array(["a"] * (N - 1)))
    _expect(tmp_path, r"array 'labels' has strings with both '\|' and ';'", x=x,
            labels=np.array(["a|b", "c;d"] * (N // 2)))
    _expect(tmp_path, r"array 'labels' row 1: label 'zz' is not in 'label_names'", x=x,
            labels=np.array(["a", "zz"] * (N // 2)), label_names=np.array(["a"]))
    odd = np.empty(N, dtype=object)
    odd[:] = "a"
    odd[2] = 7
    _expect(tmp_path, r"array 'labels' row 2: expected a string or a list", x=x, labels=odd,
            options={"allow_pickle": True})
    with pytest.raises(ValueError, match="label_separator must be a non-empty string"):
        load_vectors(str(write(tmp_path, x=x, labels=np.array(["a"] * N))), label_separator="")


def test_split_and_id_errors(tmp_path):
    x, labels = features(), np.array(["a"] * N)
    msg = _expect(tmp_path, r"array 'split' has unknown split name 'holdout' at row 3", x=x, labels=labels,
                  split=np.array(["train", "val", "test", "holdout"] * (N // 4)))
    assert "expected train/validation/test" in msg
    _expect(tmp_path, r"array 'split' has no rows for split\(s\) \['test'\]", x=x, labels=labels,
            split=np.array(["train", "dev"] * (N // 2)))
    _expect(tmp_path, r"array 'split' has 10 entries, but 'x' has 40 rows", x=x, labels=labels,
            split=np.array(["train"] * 10))
    _expect(tmp_path, r"array 'ids' has 2 entries", x=x, labels=labels, ids=np.array(["a", "b"]))
    _expect(tmp_path, r"3 rows are too few for the seeded split.*'validation'.*would be empty",
            x=features(3), labels=np.array(["a"] * 3))


@pytest.mark.slow
def test_mlp_trains_on_a_vectors_file_end_to_end(tmp_path):
    """``mlsupcon train --dataset vectors:PATH --encoder mlp``: the file behaves like yeast."""
    from fixtures_pipeline import run_cli

    rng = np.random.default_rng(0)
    n = 96
    y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    x = y @ rng.normal(size=(3, 8)) + 0.1 * rng.normal(size=(n, 8))  # labels are learnable from x
    path = write(tmp_path, x=x, y=y)
    run = tmp_path / "run"
    rc, out, err = run_cli(["train", "--dataset", f"vectors:{path}", "--encoder", "mlp", "--method", "bce",
                            "--epochs", "2", "--batch-size", "32",
                            "--output", str(run), "--no-progress"])
    assert rc == 0, err
    assert (run / "metrics.json").is_file()
