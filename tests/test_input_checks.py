"""Runs that never lie (issue 11): train mode while training, input errors before any work,
degenerate settings named.

* every trainable part of a model is in train mode (dropout on) in every training step, frozen
  parts in eval mode, for every encoder (a Hugging Face ``from_pretrained`` model starts in eval
  mode: the transformer and resnet cases load one);
* a data mistake is reported before training starts, in one line naming the file (and fast:
  before torch and Lightning are imported);
* degenerate settings (a contrastive batch of 1, tiny splits, duplicate ids, labels that look
  joined by another separator) are errors or warnings naming the setting.
"""

from __future__ import annotations

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import fixtures_pipeline as fp
import pytest
import torch
from fixtures_pipeline import TINY_CNN, TINY_MLP, assert_user_error, run_cli

TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
             "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


# ============================================================================ train mode


def _expected_modes(module: torch.nn.Module) -> dict[str, bool]:
    """``{name: should be training}``: a module holding a trainable parameter trains; a leaf whose
    parameters are all frozen is in eval mode; a leaf without parameters (dropout, activation)
    follows the nearest module above it that has parameters. The momentum (key) encoder is an EMA
    copy that trains as in MoCo; it is not checked."""
    trains: dict[str, bool] = {}  # modules with parameters: does any of them train?
    expected: dict[str, bool] = {}
    for name, m in module.named_modules():
        if name.startswith("momentum_encoder"):
            continue
        params = list(m.parameters())
        leaf = next(m.children(), None) is None
        if params:
            trains[name] = any(p.requires_grad for p in params)
            if trains[name] or leaf:
                expected[name] = trains[name]
        elif leaf:
            parent = name.rpartition(".")[0]
            while parent and parent not in trains:
                parent = parent.rpartition(".")[0]
            expected[name] = trains.get(parent, True)
    return expected


@pytest.fixture
def record_modes(monkeypatch):
    """Wraps the Lightning modules' ``training_step``: per step, the stage and the modules whose
    mode is not what it should be."""
    from mlsupcon.training import modules

    steps: list[tuple[str, list[str], int]] = []
    for cls in (modules.ContrastiveModule, modules.ClassifierModule, modules.KMCLModule):
        original = cls.__dict__["training_step"]

        def step(self, batch, i, _original=original):
            expected = _expected_modes(self)
            wrong = [f"{n or '<module>'}: {'train' if dict(self.named_modules())[n].training else 'eval'}"
                     for n, want in expected.items() if dict(self.named_modules())[n].training != want]
            steps.append((self.stage, wrong, sum(not v for v in expected.values())))
            return _original(self, batch, i)

        monkeypatch.setattr(cls, "training_step", step)
    return steps


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory):
    """A tiny BERT and a tiny ResNet saved with ``save_pretrained``: loading them goes through
    ``from_pretrained``, which leaves a model in eval mode."""
    from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

    from mlsupcon.models import minilm_path

    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=30522, **TINY_BERT), add_pooling_layer=False)
    bert.save_pretrained(root / "bert")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_path(), f), root / "bert" / f)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
                ).save_pretrained(root / "resnet")
    return root


TEXT_RUN = ["--epochs", "1", "--batch-size", "8", "--max-examples", "16", "--no-progress", "--no-auto"]


def _train(tmp_path, dataset: str, yaml_values: dict, *flags: str) -> str:
    cfg = fp.write_yaml(tmp_path / "c.yaml", {"checkpoint_every_n_steps": 0, "save_embeddings": False,
                                              **yaml_values})
    rc, _, err = run_cli(["train", "--dataset", dataset, "--config", str(cfg), *TEXT_RUN, *flags,
                          "--output", str(tmp_path / "run")])
    assert rc == 0, err
    return err


@pytest.mark.parametrize("case", ["transformer", "transformer-frozen", "cnn", "sparse", "mlp", "resnet",
                                  "frozen", "fusion"])
def test_trainable_parts_train_and_frozen_parts_stay_in_eval(case, tmp_path, pretrained_dirs, record_modes):
    text = f"jsonl:{fp.write_jsonl(tmp_path / 'docs.jsonl', n=60)}"
    # end-to-end: one stage training encoder, head and projection together
    if case == "transformer":
        opts = {"model_path": str(pretrained_dirs / "bert"), "max_length": 32, "segment_length": 32}
        # two-stage: contrastive, then fine-tuning (the MulSupCon authors' protocol)
        _train(tmp_path, text, {"encoder": "transformer", "encoder_options": opts, "method": "two-stage",
                                "finetune_encoder": True, "classifier_epochs": 1})
    elif case == "transformer-frozen":
        # the attention head through a frozen encoder (two-stage, stage 2), and freeze: true
        opts = {"model_path": str(pretrained_dirs / "bert"), "max_length": 32, "segment_length": 32}
        _train(tmp_path, text, {"encoder": "transformer", "encoder_options": opts, "method": "two-stage",
                                "head": "attention", "classifier_epochs": 1})
        assert any(stage == "classifier" and frozen for stage, _, frozen in record_modes)
        (tmp_path / "run2").mkdir()
        _train(tmp_path / "run2", text, {"encoder": "transformer", "encoder_options": {**opts, "freeze": True},
                                         "method": "bce"})
    elif case in ("cnn", "sparse"):
        opts = TINY_CNN if case == "cnn" else {"hidden_dims": [16], "featurizer": {"min_df": 1}}
        _train(tmp_path, text, {"encoder": case, "encoder_options": opts, "method": "end-to-end"})
    elif case == "mlp":
        _train(tmp_path, "yeast", {"encoder": "mlp", "encoder_options": TINY_MLP, "method": "two-stage",
                                   "finetune_encoder": True, "classifier_epochs": 2},
               "--preset", "none", "--epochs", "2")
    elif case == "resnet":
        coco = fp.write_coco(tmp_path / "coco", n_images=40)
        _train(tmp_path, f"coco:{coco}:{tmp_path / 'coco' / 'images'}", {
            "encoder": "resnet", "method": "end-to-end", "dataset_options": {"image_size": 32},
            "encoder_options": {"model_path": str(pretrained_dirs / "resnet"), "image_size": 32}})
    elif case == "frozen":
        _train(tmp_path, text, {"encoder": "frozen", "method": "end-to-end",
                                "encoder_options": {"hidden_dims": [16], "progress": False,
                                                    "cache_dir": str(tmp_path / "cache"), "save_backbone": True}})
        assert any(frozen for _, _, frozen in record_modes)  # the saved MiniLM backbone, frozen
    elif case == "fusion":
        _train(tmp_path, text, {"encoder": "fusion", "method": "end-to-end", "encoder_options": {"encoders": [
            {"name": "sparse", "featurizer": {"min_df": 1}, "hidden_dims": [8]},
            {"name": "cnn", **TINY_CNN}]}})
    assert record_modes, "no training step ran"
    wrong = [(stage, w) for stage, w, _ in record_modes if w]
    assert not wrong, wrong[0]


# ============================================================================ errors before any work


def _write_rows(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rows(splits=(("train", 30), ("validation", 10), ("test", 10)), labels=lambda i: [f"tag{i % 3}"]) -> list[dict]:
    rows, i = [], 0
    for split, n in splits:
        for _ in range(n):
            rows.append({"id": f"doc{i}", "text": f"words of document {i} about tag{i % 3}", "labels": labels(i),
                         "split": split})
            i += 1
    return rows


def _user_error(tmp_path, dataset: str, *flags: str) -> str:
    run = tmp_path / "run"
    rc, _, err = run_cli(["train", "--dataset", dataset, "--method", "bce", "--encoder", "cnn", "--epochs", "1",
                          "--no-progress", *flags, "--output", str(run)])
    line = assert_user_error(rc, err)
    assert not run.exists()  # nothing trained, nothing written
    return line


@pytest.mark.parametrize("case, rows, needles", [
    ("no test rows", _rows((("train", 30), ("validation", 10))),
     ["the test split has no examples (train 30, validation 10, test 0)", "field 'split' of", "names no test rows"]),
    ("no validation rows", _rows((("train", 30), ("test", 10))),
     ["the validation split has no examples", "names no validation rows"]),
    ("no labels", _rows(labels=lambda i: []), ["no labels (field 'labels' of", "is empty in every record"]),
    ("labels in test only", _rows(labels=lambda i: ["x"] if i >= 40 else []),
     ["no example of the train split has a label (30 examples"]),
    ("duplicate ids", [{**r, "id": "doc3"} if i == 8 else r for i, r in enumerate(_rows())],
     ["duplicate id 'doc3'", "line 4 and line 9 (field 'id')"]),
])
def test_data_mistakes_are_one_line_naming_the_file_before_any_work(case, rows, needles, tmp_path):
    path = _write_rows(tmp_path / "data.jsonl", rows)
    line = _user_error(tmp_path, f"jsonl:{path}")
    for needle in [path, *needles]:
        assert needle in line, (needle, line)


def test_a_seeded_split_that_leaves_a_split_empty_says_so(tmp_path):
    path = _write_rows(tmp_path / "data.jsonl", [{k: v for k, v in r.items() if k != "split"}
                                                  for r in _rows((("train", 4),))])
    line = _user_error(tmp_path, f"jsonl:{path}")
    assert "the seeded 80/10/10 split of 4 examples leaves it none" in line, line


_PROBE = """
import json, sys, time
from mlsupcon.cli.main import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "cpu_seconds": time.process_time(),
                  "modules": sorted(m for m in ("torch", "lightning", "transformers") if m in sys.modules)}))
"""


def test_a_data_mistake_is_reported_in_seconds_without_importing_torch(tmp_path):
    """Before: the run trained fully, then failed in torch.cat() (10-15 s of imports before any of it)."""
    import subprocess
    import sys
    import time

    path = _write_rows(tmp_path / "data.jsonl", _rows((("train", 30), ("validation", 10)), labels=lambda i: [i % 3]))
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _PROBE, "train", "--dataset", f"jsonl:{path}",
                        "--output", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    res = json.loads(p.stdout.strip().splitlines()[-1])
    lines = p.stderr.strip().splitlines()
    assert res["rc"] == 2 and res["modules"] == [], (res, p.stderr)
    # CPU seconds of the whole process, imports included: wall time depends on what else the machine
    # runs (about 0.5 s of CPU here; importing torch and Lightning alone takes about 10 s of CPU)
    assert res["cpu_seconds"] < 5 and wall < 60, (res, wall)
    # the warning (numbers as labels) and the error, one line each, no traceback
    assert len(lines) == 2 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"mlsupcon: warning: {path}: field 'labels' holds numbers (first at line 1: [0])")
    assert lines[1].startswith(f"mlsupcon: error: dataset jsonl:{path}: the test split has no examples"), lines[1]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- images


def _coco_with_bad_images(tmp_path):
    coco = fp.write_coco(tmp_path / "coco", n_images=40)
    images = tmp_path / "coco" / "images"
    (images / "000000000003.png").write_bytes(b"not an image at all")
    whole = (images / "000000000007.png").read_bytes()
    (images / "000000000007.png").write_bytes(whole[: len(whole) // 2])  # truncated: fails only when decoded
    return f"coco:{coco}:{images}", images


def test_an_unreadable_image_is_an_error_naming_it_or_skipped_and_counted(tmp_path):
    from mlsupcon.data import DataWarning, load_dataset

    spec, images = _coco_with_bad_images(tmp_path)
    line = _user_error(tmp_path, spec, "--encoder", "resnet")
    assert f"image: cannot read {images / '000000000003.png'}" in line and "2 unreadable images in all" in line
    assert "on_bad_image: skip" in line
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable image\(s\)"):
        ds = load_dataset(spec, on_bad_image="skip", image_size=16)
    assert sum(len(s) for s in ds.splits.values()) == 38 and ds.info["bad_images"]["skipped"] == 2
    kept = [p for s in ds.splits.values() for p in s.inputs.paths]
    assert not any(p.endswith(("000000000003.png", "000000000007.png")) for p in kept)
    with pytest.raises(ValueError, match="on_bad_image: expected 'error', 'skip' or 'unchecked'"):
        load_dataset(spec, on_bad_image="ignore")


@pytest.mark.slow
def test_skipped_images_are_counted_in_the_run_notes(tmp_path):
    spec, _ = _coco_with_bad_images(tmp_path)
    _train(tmp_path, spec, {"encoder": "resnet", "method": "bce", "encoder_options": {"image_size": 16},
                            "dataset_options": {"image_size": 16, "on_bad_image": "skip"}})
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any(n.startswith("dataset: skipped 2 unreadable image(s) (on_bad_image: skip;") for n in notes), notes


def test_duplicate_coco_image_ids_are_an_error(tmp_path):
    from mlsupcon.data import load_dataset

    coco = fp.write_coco(tmp_path / "coco", n_images=6)
    data = json.loads(coco.read_text())
    data["images"][4]["id"] = data["images"][1]["id"]
    coco.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"duplicate image id 2 in .*: images\[1\] and images\[4\]"):
        load_dataset(f"coco:{coco}:{tmp_path / 'coco' / 'images'}")


# ============================================================================ degenerate settings


@pytest.mark.parametrize("method", ["two-stage", "end-to-end"])
def test_a_contrastive_batch_of_one_is_an_error(method, tmp_path):
    """Before: a contrastive stage trained with a loss of ~5e-8 (an anchor and its own views only)."""
    rc, _, err = run_cli(["train", "--dataset", "yeast", "--encoder", "mlp", "--method", method, "--batch-size", "1",
                          "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, "batch_size: a contrastive loss", "batch_size=1 leaves nothing to compare",
                      "expected >= 2")
    assert not (tmp_path / "run").exists()
    # with a memory queue the batch is compared with the queue: allowed
    from mlsupcon.training.config import load_config

    assert load_config(None, {"method": "two-stage", "batch_size": 1, "queue_size": 64}).batch_size == 1


def test_one_training_example_with_a_contrastive_loss_is_an_error(tmp_path):
    path = _write_rows(tmp_path / "data.jsonl", _rows((("train", 1), ("validation", 5), ("test", 5))))
    rc, _, err = run_cli(["train", "--dataset", f"jsonl:{path}", "--method", "two-stage", "--batch-size", "4",
                          "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, "the train split has 1 example; a contrastive loss compares")


def test_tiny_splits_warn_with_their_sizes_once(tmp_path):
    import warnings

    from mlsupcon.data import DataWarning
    from mlsupcon.training.config import load_config
    from mlsupcon.training.input_checks import load_training_data

    cfg = load_config(None, {"dataset": "yeast", "method": "bce", "dataset_options.max_examples_per_split": 3})
    with pytest.warns(DataWarning, match=r"small splits: train 3, validation 3, test 3 examples "
                                         r"\(max_examples_per_split=3 \(--max-examples\); fewer than 50"):
        load_training_data(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_training_data(load_config(None, {"dataset": "yeast", "method": "bce"}))  # no warning
    # a run warns once, although the command and the runner both check the data
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc, _, err = run_cli(["train", "--dataset", "yeast", "--encoder", "mlp", "--method", "bce", "--epochs", "1",
                              "--max-examples", "20", "--no-progress", "--output", str(tmp_path / "run")])
    assert rc == 0, err
    small = [w for w in seen if issubclass(w.category, DataWarning) and "labels" not in str(w.message)]
    assert [str(w.message).split(" (")[0] for w in small] == ["small splits: train 20, validation 20, test 20 examples"]
    # (20 yeast examples leave labels without a training example: said once too, tests/test_trust_data.py)
    assert len([w for w in seen if "no training example" in str(w.message)]) == 1


def test_duplicate_csv_ids_name_both_rows(tmp_path):
    from mlsupcon.data import load_dataset

    path = tmp_path / "data.csv"
    path.write_text("id,text,labels\na,first text,x\nb,second text,y\na,third text,x\n")
    with pytest.raises(ValueError, match=r"duplicate id 'a' in .*data.csv: row 1 and row 3 \(field 'id'\)"):
        load_dataset(f"csv:{path}")


def test_numbers_as_labels_are_label_names_with_one_warning(tmp_path):
    from mlsupcon.data import DataWarning, load_dataset

    path = _write_rows(tmp_path / "data.jsonl", _rows(labels=lambda i: [i % 3, 10]))
    with pytest.warns(DataWarning, match=r"field 'labels' holds numbers \(first at line 1: \[0, 10\]\)") as seen:
        ds = load_dataset(f"jsonl:{path}")
    assert len([w for w in seen if issubclass(w.category, DataWarning)]) == 1
    assert ds.label_names == ["0", "1", "10", "2"]


@pytest.mark.parametrize("cell, separator, warns, labels", [
    ("a|b", None, "contain '|'", ["a", "b|c"]),          # '|' joins them, but ';' is the default
    ("a,b", None, "contain ','", ["a", "b,c"]),
    ("a|b", "|", None, ["a", "b", "c"]),                 # the separator said: split, no warning
    ("a;b", None, None, ["a", "b", "c"]),                # the default: no warning
])
def test_csv_label_cells_that_look_joined_by_another_separator_warn(cell, separator, warns, labels, tmp_path):
    import warnings

    from mlsupcon.data import DataWarning, load_dataset

    path = tmp_path / "data.csv"
    other = cell[1]
    path.write_text(f'text,labels\nfirst,"{cell}"\nsecond,a\nthird,"b{other}c"\n')
    options = {} if separator is None else {"label_separator": separator}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = load_dataset(f"csv:{path}", **options)
    said = [str(w.message) for w in seen if issubclass(w.category, DataWarning)]
    if warns:
        assert len(said) == 1 and f"no cell of column 'labels' contains ';' (the default label_separator) but 2 " \
            f"{warns}" in said[0] and f"--label-separator '{other}'" in said[0], said
    else:
        assert said == []
    assert sorted(ds.label_names) == sorted(labels + ([cell] if warns else []))
