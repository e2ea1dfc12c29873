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

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import fixtures_pipeline as fp
import pytest
import torch
from fixtures_pipeline import TINY_CNN, TINY_MLP, run_cli

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
