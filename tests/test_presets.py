"""Dataset presets (defaults < preset < YAML < flags) and settings chosen from the data (auto)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fixtures_pipeline as fp
import numpy as np
import pytest
import yaml

from mlsupcon.config import auto
from mlsupcon.data import load_dataset
from mlsupcon.training.config import TrainConfig, load_config
from mlsupcon.training.presets import PRESETS, preset_for

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ------------------------------------------------------------------------------------ presets


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_file_equals_preset(name):
    assert yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()) == PRESETS[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_naming_the_dataset_gives_its_preset(name):
    cfg = load_config(overrides={"dataset": name})
    resolved = json.loads(json.dumps(cfg.to_dict()))
    for key, value in PRESETS[name].items():
        assert resolved[key] == value, key
    assert cfg.preset == name
    # a field the preset leaves alone keeps its default
    assert cfg.eval_batch_size == TrainConfig().eval_batch_size


def test_yeast_preset_is_the_mulsupcon_recipe():
    cfg = load_config(overrides={"dataset": "yeast"})
    assert (cfg.encoder, cfg.encoder_options, cfg.method, cfg.loss, cfg.finetune_encoder) == (
        "mlp", {"hidden_dims": [256, 512, 256], "dropout": 0.2}, "two-stage", "mulsupcon", True)
    assert (cfg.epochs, cfg.classifier_epochs, cfg.batch_size, cfg.lr, cfg.classifier_lr) == (100, 100, 64, 1e-3, 5e-4)
    assert cfg.view_options == {"p_mask": 0.5, "noise_std": 0.0}


def test_flags_override_the_preset():
    cfg = load_config(overrides={"dataset": "yeast", "epochs": 3, "encoder_options.dropout": 0.3,
                                 "loss_options.temperature": 0.3})
    assert cfg.epochs == 3 and cfg.preset == "yeast"
    assert cfg.encoder_options == {"hidden_dims": [256, 512, 256], "dropout": 0.3}  # option by option
    assert cfg.loss_options == {"temperature": 0.3}
    assert cfg.classifier_epochs == PRESETS["yeast"]["classifier_epochs"]  # the rest is the preset's
    # another loss or encoder: the preset's options of its loss / encoder do not follow
    other = load_config(overrides={"dataset": "debtags", "loss": "himulcon", "encoder": "sparse"})
    assert other.loss_options == {} and other.encoder_options == {} and other.view_options == {}
    assert other.lr == PRESETS["debtags"]["lr"]


def test_yaml_overrides_the_preset_and_flags_override_the_yaml(tmp_path):
    path = fp.write_yaml(tmp_path / "c.yaml", {"dataset": "yeast", "batch_size": 32, "epochs": 7,
                                               "encoder_options": {"dropout": 0.1}})
    cfg = load_config(path, {"epochs": 2})
    assert (cfg.batch_size, cfg.epochs, cfg.preset) == (32, 2, "yeast")
    assert cfg.encoder_options == {"hidden_dims": [256, 512, 256], "dropout": 0.1}
    assert cfg.loss == "mulsupcon" and cfg.finetune_encoder is True  # from the preset
    assert cfg.auto is False  # a config file: nothing is chosen from the data
    # the dataset named by a flag picks the preset under the YAML file too
    bare = fp.write_yaml(tmp_path / "bare.yaml", {"epochs": 7})
    cfg = load_config(bare, {"dataset": "yeast"})
    assert (cfg.epochs, cfg.encoder, cfg.preset) == (7, "mlp", "yeast")


def test_no_dataset_named_no_preset_and_preset_none():
    assert load_config(None, {}).to_dict() == TrainConfig().to_dict()
    plain = load_config(None, {"dataset": "yeast", "preset": "none", "encoder": "mlp"})
    assert plain.preset is None and plain.epochs == TrainConfig().epochs and plain.encoder_options == {}
    chosen = load_config(None, {"dataset": f"jsonl:{Path('x.jsonl')}", "preset": "debtags"})
    assert chosen.preset == "debtags" and chosen.encoder_options == PRESETS["debtags"]["encoder_options"]
    assert chosen.dataset.startswith("jsonl:")


def test_unknown_preset_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"^preset: unknown preset 'nope'"):
        load_config(None, {"preset": "nope"})
    rc, _, err = fp.run_cli(["train", "--dataset", "yeast", "--preset", "nope", "--output", str(tmp_path / "r")])
    fp.assert_user_error(rc, err, "preset", "nope", "yeast")
    assert not (tmp_path / "r").exists()


def test_preset_for_is_a_copy():
    p = preset_for("YEAST")
    p["encoder_options"]["hidden_dims"].append(1)
    assert PRESETS["yeast"]["encoder_options"]["hidden_dims"] == [256, 512, 256]
    assert preset_for("jsonl:a.jsonl") == {} and preset_for(None) == {}


def test_train_dataset_yeast_uses_the_preset(tmp_path):
    out = tmp_path / "run"
    rc, _, err = fp.run_cli(["train", "--dataset", "yeast", "--loss", "mulsupcon", "--epochs", "1",
                             "--classifier-epochs", "1", "--max-examples", "96", "--no-progress",
                             "--output", str(out)])
    assert rc == 0, err
    saved = fp.read_config_yaml(out)
    assert saved["preset"] == "yeast" and saved["encoder"] == "mlp" and saved["finetune_encoder"] is True
    assert saved["encoder_options"] == {"hidden_dims": [256, 512, 256], "dropout": 0.2}
    assert (saved["batch_size"], saved["epochs"], saved["classifier_epochs"]) == (64, 1, 1)
    assert "chose from the data" not in err  # a preset is a recipe: nothing chosen from the data
    m = fp.check_run_folder(out)
    assert m["loss"] == "mulsupcon" and m["params"]["encoder"] == 103 * 256 + 256 + 256 * 512 + 512 + 512 * 256 + 256


# ------------------------------------------------------------------------------- auto settings


def _write_texts(path: Path, texts: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = [f"l{i}" for i in range(6)]
    rows = []
    for i, text in enumerate(texts):
        split = "train" if i % 10 < 8 else ("validation" if i % 10 == 8 else "test")
        labs = sorted(rng.choice(labels, size=int(rng.integers(1, 3)), replace=False).tolist())
        rows.append(json.dumps({"text": text, "labels": labs, "split": split}, ensure_ascii=False))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


_WORDS = ["editor", "game", "library", "network", "audio", "puzzle", "server", "python", "kernel", "font"]
_HAN = "我喜欢学习中文今天天气很好他们在公园里散步这本书非常有意思"


def _short(n, rng):
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(4, 12)))) for _ in range(n)]


def _long(n, rng):
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(1100, 1500)))) for _ in range(n)]


def _cjk(n, rng):
    return ["".join(rng.choice(list(_HAN), size=int(rng.integers(10, 30)))) for _ in range(n)]


@pytest.fixture(scope="module")
def text_sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("auto")
    rng = np.random.default_rng(0)
    return {kind: load_dataset(f"jsonl:{_write_texts(d / f'{kind}.jsonl', make(300, rng))}")
            for kind, make in (("short", _short), ("long", _long), ("cjk", _cjk))}


def test_auto_settings_differ_with_the_texts(text_sets):
    chosen = {k: auto.auto_settings(ds) for k, ds in text_sets.items()}
    for kind in ("short", "long"):  # words separated by spaces: the Debtags recipe on MiniLM features
        o, reasons = chosen[kind]
        assert (o["encoder"], o["method"], o["knn"], o["blend_linear"]) == ("frozen", "end-to-end", "off", True), kind
        assert o["encoder_options.hidden_dims"] == [1024] and o["contrastive_weight"] == 0.01
        # the recipe's rate and cap; under 5,000 training examples the patience is 10
        assert (o["lr"], o["epochs"], o["patience"], o["batch_size"]) == (0.003, 30, 10, 16)
        assert not {"classifier_epochs", "classifier_lr", "probe_batch_size"} & set(o)  # one stage
        assert any(r.startswith("encoder=frozen") and "300 texts" in r for r in reasons), reasons
    o, reasons = chosen["cjk"]  # no spaces between words: TF-IDF character n-grams, trained end to end
    assert (o["encoder"], o["method"], o["knn"], o["blend_linear"]) == ("sparse", "end-to-end", "off", True)
    # 240 // 8 -> 16; 150,000 examples / 240 per epoch -> the cap, 20; under 5,000 examples patience 10
    assert (o["batch_size"], o["epochs"], o["patience"], o["lr"]) == (16, 20, 10, 0.003)
    assert o["contrastive_weight"] == 0.01 and o["encoder_options.hidden_dims"] == [512]
    assert not {"classifier_epochs", "classifier_lr", "probe_batch_size"} & set(o)  # one stage
    assert "240" in reasons[0] and "6 labels" in reasons[0], reasons[0]
    assert any(r.startswith("encoder=sparse") and "no words to split" in r for r in reasons), reasons
    cjk = o["encoder_options.featurizer"]
    assert cjk["word_ngram_range"] is None and cjk["char_analyzer"] == "char" and "max_chars" not in cjk
    assert cjk["max_features"] == auto.SPARSE_MAX_FEATURES
    assert "short texts" in chosen["short"][1][0] and "long texts" in chosen["long"][1][0]
    assert "CJK" in chosen["cjk"][1][0]  # the tokenizer choice's reason: an unspaced script


def test_auto_settings_sparse_features_when_too_many_texts_to_embed(text_sets, monkeypatch):
    monkeypatch.setattr(auto, "FROZEN_MAX_TEXTS", 299)  # each set has 300 texts
    chosen = {k: auto.auto_settings(ds)[0] for k, ds in text_sets.items()}
    assert {o["encoder"] for o in chosen.values()} == {"sparse"}
    short, long = chosen["short"]["encoder_options.featurizer"], chosen["long"]["encoder_options.featurizer"]
    assert short == {"max_features": auto.SPARSE_MAX_FEATURES}
    assert long == {"max_features": auto.SPARSE_MAX_FEATURES, "max_chars": 20_000}
    assert {o["method"] for o in chosen.values()} == {"end-to-end"}
    # a two-stage run the user asks for keeps the probe's settings and the kNN blend
    o, _ = auto.auto_settings(text_sets["cjk"], method="two-stage")
    assert "method" not in o and o["knn"] == "blend" and o["epochs"] == 100 and o["classifier_lr"] == 0.02
    # a method the user chose is kept, with the frozen recipe's rate unless it is two-stage
    o, _ = auto.auto_settings(text_sets["short"], encoder="frozen", method="bce")
    assert "method" not in o and "contrastive_weight" not in o and o["lr"] == 0.003
    o, _ = auto.auto_settings(text_sets["short"], encoder="frozen", method="two-stage")
    assert "lr" not in o and o["epochs"] == 100


def test_auto_settings_read_long_texts_further_within_the_embedding_budget(text_sets, monkeypatch):
    import importlib.util

    short, _ = auto.auto_settings(text_sets["short"])
    assert "encoder_options.max_length" not in short  # the encoder's 128 tokens
    o, reasons = auto.auto_settings(text_sets["long"])  # 1,100-1,500 words, 300 texts: 512 fits the budget
    assert o["encoder_options.max_length"] == 512
    assert any(r.startswith("encoder_options.max_length=512: long texts") for r in reasons), reasons
    # 300 texts: 13.5 s at 512 tokens, 9 s at 384, 5.25 s at 256
    monkeypatch.setattr(auto, "FROZEN_LONG_EMBED_BUDGET_S", 10)
    assert auto.auto_settings(text_sets["long"])[0]["encoder_options.max_length"] == 384
    monkeypatch.setattr(auto, "FROZEN_LONG_EMBED_BUDGET_S", 6)
    assert auto.auto_settings(text_sets["long"])[0]["encoder_options.max_length"] == 256
    monkeypatch.setattr(auto, "FROZEN_LONG_EMBED_BUDGET_S", 10)  # 384 tokens with int8; nothing fits PyTorch
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert "encoder_options.max_length" not in auto.auto_settings(text_sets["long"])[0]  # PyTorch: 2.5x slower
    # the user's encoder options are theirs; a sparse encoder has no max_length
    assert "encoder_options.max_length" not in auto.auto_settings(text_sets["long"], encoder="sparse")[0]


def test_auto_settings_for_a_cnn_the_user_chose(text_sets):
    lengths = {}
    for kind, ds in text_sets.items():
        o, reasons = auto.auto_settings(ds, encoder="cnn")
        assert "encoder" not in o and o["encoder_options.tokenizer"] == "auto", kind
        assert o["method"] == "end-to-end" and o["knn"] == "off" and "lr" not in o  # the CNN keeps lr 1e-3
        assert o["view_options"] == {"crop": 0.9, "p_drop": 0.1, "p_mask": 0.1}
        lengths[kind] = o["encoder_options.max_length"]
        assert any("95th percentile" in r for r in reasons)
    # max_length: 95th percentile of the token counts (words; characters for Chinese), in steps of 16:
    # 4-11 words, 1,100-1,499 words, 10-29 characters
    assert lengths["short"] == 16 and lengths["cjk"] == 32
    assert 1440 <= lengths["long"] <= 1504 and lengths["long"] % 16 == 0


def test_apply_prints_one_block_and_keeps_what_the_user_set(text_sets, tmp_path):
    ds = text_sets["short"]
    spec = ds.info["spec"]
    cfg = load_config(None, {"dataset": spec, "encoder": "cnn", "batch_size": 7, "encoder_options.max_length": 33})
    err = io.StringIO()
    new, same = auto.apply_auto_settings(cfg, ds, stream=err)
    assert same is ds and new.auto is False
    assert (new.encoder, new.batch_size, new.encoder_options["max_length"]) == ("cnn", 7, 33)  # untouched
    assert new.encoder_options["embed_dim"] == 64 and new.epochs != cfg.epochs  # the rest chosen
    text = err.getvalue()
    assert text.startswith("mlsupcon: no config given; chose from the data (240 short texts")
    assert "kept as you set them: encoder=cnn" in text and "batch_size=7" in text
    assert "epochs=" in text and "encoder=sparse" not in text
    # a YAML config turns auto off; --no-auto too; a config built in Python keeps its non-defaults
    yml = fp.write_yaml(tmp_path / "c.yaml", {"dataset": spec})
    for off in (load_config(yml), load_config(None, {"dataset": spec, "auto": False})):
        quiet = io.StringIO()
        assert auto.apply_auto_settings(off, ds, stream=quiet)[0] is off and quiet.getvalue() == ""
    lib, _ = auto.apply_auto_settings(TrainConfig(dataset=spec, epochs=3), ds, stream=io.StringIO())
    assert lib.epochs == 3 and lib.encoder == "frozen" and lib.method == "end-to-end" and lib.lr == 0.003
    # bundled datasets and methods that build their own model get nothing
    yeast = load_config(None, {"dataset": "yeast", "preset": "none"})
    assert auto.apply_auto_settings(yeast, ds, stream=io.StringIO())[0] is yeast


def test_auto_vectors_standardise_and_reload(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(50.0, 10.0, size=(200, 12)).astype(np.float32)
    y = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    cfg = load_config(None, {"dataset": f"vectors:{tmp_path / 'v.npz'}", "dataset_options.seed": 1})
    ds = load_dataset(cfg.dataset, **cfg.dataset_options)
    new, ds2 = auto.apply_auto_settings(cfg, ds, stream=io.StringIO())
    assert new.encoder == "mlp" and new.finetune_encoder is True
    assert new.dataset_options == {"seed": 1, "standardize": True}
    assert abs(float(ds2.splits["train"].inputs.mean())) < 1e-3 and float(ds.splits["train"].inputs.mean()) > 40


def test_cli_run_on_jsonl_chooses_from_the_data_and_resumes(tmp_path):
    from mlsupcon.training import runner
    from mlsupcon.training.run_folder import check_resume_config

    data = fp.write_jsonl(tmp_path / "d.jsonl", n=120)
    out = tmp_path / "run"
    flags = ["--dataset", f"jsonl:{data}", "--epochs", "1", "--classifier-epochs", "1", "--no-progress",
             "--output", str(out)]
    rc, _, err = fp.run_cli(["train", *flags])
    assert rc == 0, err
    block = [line for line in err.splitlines() if line.startswith("mlsupcon: no config given")]
    assert len(block) == 1 and "short texts" in block[0]
    # few texts whose label names are words: the label-names head on the sentence embeddings, BCE
    assert "encoder=frozen" in err and "method=bce" in err and "head=label-names" in err
    assert "kept as you set them: epochs=1" in err
    saved = fp.read_config_yaml(out)
    assert saved["encoder"] == "frozen" and saved["auto"] is False and saved["preset"] is None
    assert saved["method"] == "bce" and saved["blend_linear"] is True and saved["knn"] == "off"
    assert saved["epochs"] == 1 and saved["encoder_options"]["hidden_dims"] == [] and saved["head"] == "label-names"
    # the method chosen is the one that ran: one stage, no contrastive pretraining stage
    assert (out / "logs" / "end_to_end").is_dir() and not (out / "logs" / "contrastive").exists()
    n_train = len(load_dataset(f"jsonl:{data}").splits["train"])
    assert 64 <= n_train < 128 and saved["batch_size"] == 8  # min(256, n_train // 8) rounded down to 8
    m = fp.check_run_folder(out)
    # the decision rule chosen by cross-validation on validation, and said so; per-label thresholds saved
    assert saved["threshold"] == "auto"
    rule = m["chosen_on_validation"]["threshold_rule"]
    assert rule["rule"] in ("tune", "tune-per-label") and rule["cross_validated"]["folds"] == 5
    assert "5-fold cross-validation on validation" in m["threshold_source"]
    model_json = json.loads((out / "model" / "model.json").read_text())
    assert ("thresholds" in model_json) == ("thresholds" in m) == (rule["rule"] == "tune-per-label")
    # each part of the TF-IDF blend alone, on test: the linear part is the linear method's model
    parts = m["blend_parts"]
    assert set(parts) == {"model", "linear"} and all(0 <= v[k] <= 1 for v in parts.values() for k in v)
    rc, _, err = fp.run_cli(["train", "--dataset", f"jsonl:{data}", "--method", "linear", "--no-progress",
                             "--output", str(tmp_path / "lin")])
    assert rc == 0, err
    assert parts["linear"]["map"] == pytest.approx(fp.check_run_folder(tmp_path / "lin")["map"], abs=1e-6)
    # --resume with the same flags chooses the same settings; so does the saved config.yaml
    again = load_config(None, {"dataset": f"jsonl:{data}", "epochs": 1, "classifier_epochs": 1, "progress": False,
                               "output": str(out), "resume": True})
    ds = load_dataset(again.dataset)
    chosen = auto.apply_auto_settings(again, ds, stream=io.StringIO())[0]
    check_resume_config(runner.with_resolved_encoder_options(chosen), out)  # as run_training does
    check_resume_config(load_config(out / "config.yaml", {"resume": True}), out)


def test_compare_chooses_once_for_every_run(tmp_path, monkeypatch, capsys):
    from mlsupcon.training import compare, runner

    seen = []

    def fake_run(cfg, dataset=None):  # records the configs; no training
        seen.append(cfg)
        return {**{m: 0.5 for m in compare.TABLE_METRICS}, "timings": {"total_s": 0.0}}

    monkeypatch.setattr(runner, "run_training", fake_run)
    data = fp.write_jsonl(tmp_path / "d.jsonl", n=120)
    base = load_config(None, {"dataset": f"jsonl:{data}", "epochs": 2})
    compare.run_compare(base, ["bce", "simdis"], [0, 1], tmp_path / "cmp", plots=False)
    err = capsys.readouterr().err
    assert err.count("mlsupcon: no config given; chose from the data") == 1
    assert len(seen) == 4 and all(c.auto is False and c.encoder == "frozen" and c.epochs == 2 for c in seen)
    assert {c.method for c in seen} == {"bce", "end-to-end"} and all(c.lr == 0.003 for c in seen)


def test_cli_run_on_unspaced_text_trains_the_sparse_encoder_end_to_end(tmp_path):
    rng = np.random.default_rng(3)
    data = _write_texts(tmp_path / "cjk.jsonl", _cjk(150, rng))
    out = tmp_path / "run"
    rc, _, err = fp.run_cli(["train", "--dataset", f"jsonl:{data}", "--epochs", "2", "--no-progress",
                             "--output", str(out)])
    assert rc == 0, err
    assert "encoder=sparse" in err and "method=end-to-end" in err and "knn=off" in err
    saved = fp.read_config_yaml(out)
    assert (saved["encoder"], saved["method"], saved["knn"], saved["blend_linear"]) == ("sparse", "end-to-end",
                                                                                        "off", True)
    assert saved["encoder_options"]["featurizer"]["char_analyzer"] == "char" and saved["epochs"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["timings"]["train_s"] > 0 and "contrastive_s" not in metrics["timings"]  # one stage
    assert 0.0 <= metrics["map"] <= 1.0 and "blend_linear" in metrics["chosen_on_validation"]


def test_the_label_names_head_for_few_texts_with_worded_labels_only(text_sets, tmp_path):
    worded = fp.write_jsonl(tmp_path / "worded.jsonl", n=120)  # labels such as sports, politics
    ds = load_dataset(f"jsonl:{worded}")
    assert auto.data_statistics(ds)["label_words_share"] == 1.0
    o, reasons = auto.auto_settings(ds)
    assert (o["encoder"], o["method"], o["head"], o["encoder_options.hidden_dims"]) == ("frozen", "bce",
                                                                                       "label-names", [])
    assert o["blend_linear"] is True and "contrastive_weight" not in o and o["epochs"] == 100
    assert any(r.startswith("head=label-names") and "100% of the label names are words" in r for r in reasons)
    # labels l0..l5 are no words: the Debtags recipe
    assert auto.auto_settings(text_sets["short"])[0]["encoder_options.hidden_dims"] == [1024]
    # not when a contrastive method, a head or the caller rules it out, nor above NAMES_MAX_TRAIN texts
    for kwargs in ({"method": "end-to-end"}, {"method": "two-stage"}, {"label_names_head": False}):
        assert "head" not in auto.auto_settings(ds, **kwargs)[0], kwargs
    assert auto.auto_settings(ds, method="asl")[0]["head"] == "label-names"
    small = auto.NAMES_MAX_TRAIN
    try:
        auto.NAMES_MAX_TRAIN = len(ds.splits["train"]) - 1
        assert "head" not in auto.auto_settings(ds)[0]
    finally:
        auto.NAMES_MAX_TRAIN = small
    user = load_config(None, {"dataset": f"jsonl:{worded}", "head": "linear"})
    cfg, _ = auto.apply_auto_settings(user, ds, stream=io.StringIO())
    assert cfg.head == "linear" and cfg.encoder_options["hidden_dims"] == [1024] and cfg.method == "end-to-end"
