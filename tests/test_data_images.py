"""Image datasets: COCO-format fixtures, Fashion-MNIST mosaics, image containers."""

import json
from pathlib import Path

import numpy as np
import pytest

from mlsupcon.data import ImageArray, ImageFiles, images_to_tensor, load_dataset
from mlsupcon.data.fashion import DEFAULT_FASHION_ROOT, FASHION_MNIST_CLASSES

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
]


def _write_coco(root: Path, name="instances_val2017.json", n_images=10, image_dir="val2017", start_id=1):
    from PIL import Image

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    rng = np.random.default_rng(0)
    for i in range(n_images):
        iid = start_id + i
        fn = f"{iid:012d}.png"
        size = (20 + i, 16) if i % 2 else (16, 24)
        arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        mode_img = Image.fromarray(arr)
        if i == 1:
            mode_img = mode_img.convert("L")  # a greyscale file must come back as RGB
        mode_img.save(root / image_dir / fn)
        images.append({"id": iid, "file_name": fn, "width": size[0], "height": size[1]})
        if i == 0:
            continue  # one image without annotations
        cats = [1] if i % 3 == 0 else [3, 17, 17]
        for c in cats:
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": c, "bbox": [0, 0, 1, 1]})
    data = {"images": images, "annotations": anns, "categories": CATEGORIES}
    p = root / "annotations" / name
    p.write_text(json.dumps(data))
    return p


def test_coco_single_file_seeded_split(tmp_path):
    ann = _write_coco(tmp_path)
    ds = load_dataset(f"coco:{ann}", image_size=32, seed=0)
    assert ds.modality == "image"
    assert ds.label_names == ["person", "car", "cat", "dog"]  # ordered by category id
    assert sum(len(s) for s in ds.splits.values()) == 10
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [8, 1, 1]
    assert ds.info["unlabeled_images"] == {k: (1 if "1" in ds.splits[k].ids else 0) for k in ds.splits}
    img = ds.splits["train"].inputs[0]
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3)
    assert isinstance(ds.splits["train"].inputs, ImageFiles)
    h = ds.hierarchy
    assert h.coarse_names == ["animal", "person", "vehicle"]
    assert h.coarse_of("dog") == "animal" and h.coarse_of("car") == "vehicle"
    # labels: image 3 (i=2) has car+cat, image 4 (i=3) has person
    all_ids = sum((s.ids for s in ds.splits.values()), [])
    allsplit = {i: (k, j) for k in ds.splits for j, i in enumerate(ds.splits[k].ids)}
    k, j = allsplit["3"]
    assert ds.splits[k].label_lists(ds.label_names)[j] == ["car", "cat"]
    assert sorted(all_ids, key=int) == [str(i) for i in range(1, 11)]
    again = load_dataset(f"coco:{ann}", image_size=32, seed=0)
    assert again.splits["test"].ids == ds.splits["test"].ids


def test_coco_explicit_files_and_image_dir(tmp_path):
    train_ann = _write_coco(tmp_path / "a", name="instances_train2017.json", image_dir="train2017", n_images=6)
    val_ann = _write_coco(tmp_path / "b", name="whatever.json", image_dir="imgs", n_images=4, start_id=100)
    ds = load_dataset(
        f"coco:{val_ann}:{tmp_path / 'b' / 'imgs'}",
        train=str(train_ann),
        image_size=16,
        drop_unlabeled=True,
    )
    assert len(ds.splits["train"]) == 5  # 6 images, the unannotated one dropped
    assert len(ds.splits["validation"]) + len(ds.splits["test"]) == 3
    assert ds.splits["validation"].inputs[0].shape == (16, 16, 3)
    assert ds.info["split"]["seeded"] == ["validation", "test"]


def test_coco_errors(tmp_path):
    ann = _write_coco(tmp_path)
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        load_dataset(f"coco:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"malformed JSON in .*bad\.json"):
        load_dataset(f"coco:{bad}")
    data = json.loads(ann.read_text())
    del data["categories"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing key 'categories' in .*bad\.json"):
        load_dataset(f"coco:{bad}")
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 99
    (tmp_path / "annotations" / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[0\] of .*c\.json: unknown category_id 99"):
        load_dataset(f"coco:{tmp_path / 'annotations' / 'c.json'}:{tmp_path / 'val2017'}")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset(f"coco:{ann}:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match=r"no annotation file for split\(s\) \['test'\]"):
        load_dataset("coco:", train=str(ann), val=str(ann))


def test_image_containers():
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    a = ImageArray(grey)
    assert a[1].shape == (4, 4, 3) and (a[1][..., 0] == a[1][..., 2]).all()
    assert len(a.subset([1])) == 1 and np.array_equal(a.subset([1])[0], a[1])
    assert ImageArray(grey, size=8)[0].shape == (8, 8, 3)
    t = images_to_tensor([a[0], a[1]])
    assert t.shape == (2, 3, 4, 4) and float(t.max()) <= 1.0
    with pytest.raises(ValueError, match="uint8"):
        ImageArray(np.zeros((1, 4, 4), np.float32))
    with pytest.raises(FileNotFoundError, match="image file not found"):
        ImageFiles(["/nonexistent/x.png"])[0]


@pytest.mark.skipif(not Path(DEFAULT_FASHION_ROOT).is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mosaic_tiny():
    ds = load_dataset("fashion-mosaic", train_size=60, validation_size=12, test_size=10, seed=5)
    assert ds.modality == "image" and ds.label_names == FASHION_MNIST_CLASSES
    assert [len(ds.splits[s]) for s in ("train", "validation", "test")] == [60, 12, 10]
    tr = ds.splits["train"]
    assert isinstance(tr.inputs, ImageArray) and tr.inputs[0].shape == (56, 56, 3) and tr.inputs[0].dtype == np.uint8
    counts = np.asarray(tr.labels.sum(1)).ravel()
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts.tolist())) >= 3  # varied label counts
    h = ds.hierarchy
    assert h.coarse_names == ["bags", "clothing", "footwear"]
    assert h.coarse_of("Sneaker") == "footwear" and h.coarse_of("Bag") == "bags" and h.coarse_of("Coat") == "clothing"
    # Seeded and per-split: a different train_size leaves validation/test unchanged
    other = load_dataset("fashion-mosaic", train_size=30, validation_size=12, test_size=10, seed=5)
    assert np.array_equal(other.splits["test"].inputs.array, ds.splits["test"].inputs.array)
    assert (other.splits["validation"].labels != ds.splits["validation"].labels).nnz == 0
    resized = load_dataset("fashion-mosaic", train_size=2, validation_size=2, test_size=2, image_size=32)
    assert resized.splits["test"].inputs[0].shape == (32, 32, 3)


def test_fashion_mosaic_missing_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mosaic", root=str(tmp_path), train_size=2, validation_size=2, test_size=2)
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'size'.*image_size"):
        load_dataset("fashion-mosaic", size=3)
