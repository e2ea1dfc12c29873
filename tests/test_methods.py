"""The method registry and its contract: validation before anything heavy, a method without
Lightning, the encoder's prepare hook, OOM hints and compare rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from fixtures_pipeline import TINY_MLP, assert_user_error, run_cli

from mlsupcon.training.config import TrainConfig, load_config
from mlsupcon.training.methods import METHODS, FitContext, Method, get_method
from mlsupcon.training.methods.base import make_head

TINY = ["--dataset", "yeast", "--encoder", "mlp", "--epochs", "1", "--batch-size", "16", "--max-examples", "40",
        "--no-progress"]


def test_registry_names_and_flags():
    builtin = ["two-stage", "end-to-end", "bce", "asl", "kmcl"]
    assert list(METHODS)[:5] == builtin  # more may be registered after them
    for name, cls in METHODS.items():
        assert cls.name == name and get_method(name) is cls
        assert set(cls.options) <= set(TrainConfig.fields()), name
    assert {n for n in builtin if METHODS[n].uses_contrastive_loss} == {"two-stage", "end-to-end"}
    assert [METHODS[n].classifier_loss for n in builtin] == [None, None, None, "asl", "kmcl"]
    with pytest.raises(ValueError, match=r"method: expected one of \('two-stage'.*got 'nope'"):
        get_method("nope")


# ------------------------------------------------------------------------ validation, early and light

@pytest.mark.parametrize("extra, needles", [
    (["--method", "two-stage", "--loss", "asl"], ["loss: 'asl' is a classifier loss; use --method asl"]),
    (["--method", "end-to-end", "--loss", "kmcl"], ["loss: 'kmcl' is a classifier loss; use --method kmcl"]),
    (["--method", "end-to-end", "--loss", "nope"], ["unknown contrastive loss 'nope'", "simdis"]),
    (["--method", "bce", "--momentum", "0.9"], ["momentum", "two-stage", "'bce'"]),
    (["--method", "two-stage", "--loss", "himulcon", "--queue-size", "8"], ["queue_size", "himulcon"]),
    (["--method", "bce", "--head", "nope"], ["head", "nope", "linear"]),
])
def test_method_checks_run_before_any_work(extra, needles, tmp_path):
    # `train` reads and checks the data first, without torch (tests/test_input_checks.py), then these
    # names against their registries (torch), before Lightning: nothing is trained or written.
    rc, _, err = run_cli(["train", *TINY, *extra, "--output", str(tmp_path / "run")])
    assert_user_error(rc, err, *needles)
    assert not (tmp_path / "run").exists()


def test_kmcl_head_options_are_checked(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("head_options: {mdoe: anisotropic}\n")
    rc, _, err = run_cli(["train", *TINY, "--method", "kmcl", "--config", str(cfg), "--output", str(tmp_path / "r")])
    assert_user_error(rc, err, "head_options", "mdoe", "mode")


_PROBE = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from mlsupcon.cli.main import main
    rc = main(sys.argv[1:])
    print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                      "modules": sorted(m for m in ("torch", "lightning", "transformers") if m in sys.modules)}))
""")


def _probe(argv: list[str]) -> dict:
    p = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120)
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "stderr": p.stderr}


def test_bad_options_fail_fast_without_heavy_imports(tmp_path):
    out = ["--output", str(tmp_path / "run")]
    # Method and plain field checks need neither torch nor Lightning.
    for argv in (["train", "--method", "nope", *out], ["train", "--epochs", "0", *out],
                 ["compare", "--method", "nope", "--losses", "bce"]):
        res = _probe(argv)
        assert res["rc"] == 2 and res["stderr"].startswith("mlsupcon: error:"), res
        assert res["modules"] == [], res
        assert res["seconds"] < 2.0, res
    # Loss and head names are checked against their registries (torch), still without Lightning.
    for argv in (["train", "--method", "two-stage", "--loss", "asl", *out], ["train", "--head", "nope", *out]):
        res = _probe(argv)
        assert res["rc"] == 2 and res["modules"] == ["torch"], res
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ a method without Lightning

class LeastSquaresProbe(Method):
    """Fits a linear head on the random encoder's features by least squares; no Lightning."""

    name = "lsq-probe"
    options = ("head",)

    def fit(self, ctx: FitContext):
        from mlsupcon.models import Classifier

        with torch.no_grad():
            feats, ys = zip(*[(ctx.encoder(x), y) for x, y, _ in ctx.eval_loader("train")])
            x = torch.cat([torch.cat(feats), torch.ones(sum(len(f) for f in feats), 1)], 1)
            w = torch.linalg.lstsq(x, 4 * torch.cat(ys) - 2).solution
            head = make_head(ctx)
            head.linear.weight.copy_(w[:-1].T)
            head.linear.bias.copy_(w[-1])
        ctx.timings["train_s"] = 0.0
        return Classifier(ctx.encoder, head)


def test_a_method_without_lightning_runs_through_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "lsq-probe", LeastSquaresProbe)
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"encoder_options": TINY_MLP}))
    rc, out, err = run_cli(["train", *TINY, "--method", "lsq-probe", "--config", str(cfg), "--output", str(run)])
    assert rc == 0, err
    m = json.loads((run / "metrics.json").read_text())
    assert m["method"] == m["loss"] == "lsq-probe" and 0 <= m["map"] <= 1
    assert m["skipped_nonfinite_steps"] == 0 and m["timings"]["train_s"] == 0.0
    assert not (run / "checkpoints").exists() and not (run / "logs").exists()  # no Lightning stage
    model = json.loads((run / "model" / "model.json").read_text())
    assert model["method"] == "lsq-probe" and model["head"]["kind"] == "linear" and model["projection"] is None
    rc, out, err = run_cli(["evaluate", str(run), "--json"])
    assert rc == 0, err
    again = json.loads(out[out.index("{"):])
    assert again["map"] == pytest.approx(m["map"], abs=1e-9)
    assert again["micro_f1"] == pytest.approx(m["micro_f1"], abs=1e-9)


def test_encoder_prepare_hook_is_called_once_before_training(tmp_path, monkeypatch):
    from mlsupcon.models import MLPEncoder

    calls = []

    def prepare(self, split_inputs):
        calls.append({k: len(v) for k, v in split_inputs.items()})

    monkeypatch.setattr(MLPEncoder, "prepare", prepare, raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"encoder_options": TINY_MLP}))
    rc, _, err = run_cli(["train", *TINY, "--method", "bce", "--config", str(cfg), "--output", str(tmp_path / "r")])
    assert rc == 0, err
    assert calls == [{"train": 40, "validation": 40, "test": 40}]


# ------------------------------------------------------------------------ OOM hints, compare rows

@pytest.mark.parametrize("method, finetune, present, absent", [
    ("two-stage", False, ["chunk_size", "probe_batch_size"], []),
    ("two-stage", True, ["chunk_size", "eval_batch_size"], ["probe_batch_size"]),
    ("end-to-end", False, ["chunk_size", "eval_batch_size"], ["probe_batch_size"]),
    ("bce", False, ["eval_batch_size"], ["chunk_size", "probe_batch_size"]),
    ("kmcl", False, ["eval_batch_size"], ["chunk_size", "probe_batch_size"]),
])
def test_oom_message_takes_the_method_hints(method, finetune, present, absent):
    from mlsupcon.training.reliability import oom_message

    cfg = TrainConfig(method=method, finetune_encoder=finetune, loss="simdis").validate()
    msg = oom_message(cfg, "end_to_end", RuntimeError("CUDA out of memory"))
    assert msg.startswith("out of GPU memory in stage 'end_to_end'") and "--batch-size" in msg
    for needle in present:
        assert needle in msg, (needle, msg)
    for needle in absent:
        assert needle not in msg, (needle, msg)


def test_compare_rows_follow_the_registry(tmp_path):
    from mlsupcon.training.compare import check_rows, method_rows, run_config_for

    assert method_rows()[:3] == ["bce", "asl", "kmcl"]  # then any method added without a contrastive loss
    base = TrainConfig(method="end-to-end", loss="all", loss_options={"temperature": 0.3},
                       kmcl_options={"temperature": 0.2})
    cell = run_config_for(base, "simdis", 1, tmp_path / "x")
    assert (cell.method, cell.loss, cell.loss_options, cell.seed) == ("end-to-end", "simdis", {"temperature": 0.3}, 1)
    assert run_config_for(base, "bce", 0, tmp_path).loss_options == {}
    kmcl = run_config_for(base, "kmcl", 0, tmp_path)
    assert (kmcl.method, kmcl.loss_options) == ("kmcl", {"temperature": 0.2})
    # a base method without a contrastive loss: contrastive rows fall back to two-stage
    assert run_config_for(TrainConfig(method="bce"), "any", 0, tmp_path).method == "two-stage"
    check_rows(["bce", "simdis", "himulcon", "asl", "kmcl"])
    with pytest.raises(ValueError, match="losses: unknown name 'nope'"):
        check_rows(["bce", "nope"])


# ------------------------------------------------------------------------ the CLI's flag table

def test_every_flag_comes_from_the_table_and_sets_its_field():
    from mlsupcon.cli.main import FLAGS, _overrides, build_parser

    parser = build_parser()
    subs = {name: p for a in parser._subparsers._group_actions for name, p in a.choices.items()}
    fields = set(TrainConfig.fields())
    for command in ("train", "compare"):
        flags = {s for a in subs[command]._actions for s in a.option_strings if s.startswith("--")}
        table = {f.flag for f in FLAGS if command in f.commands}
        extra = {"--help", "--config"} | ({"--losses", "--seeds", "--seed-start", "--output", "--no-plots"}
                                          if command == "compare" else set())
        assert flags == table | extra, command
    for f in FLAGS:
        assert f.field.split(".")[0] in fields, f

    args = parser.parse_args(["train", "--max-examples", "7", "--temperature", "0.3", "--no-progress", "--resume",
                              "--devices", "2", "--model-path", "/m", "--lr", "0.5"])
    over = _overrides(args, "train")
    assert over == {"dataset_options.max_examples_per_split": 7, "loss_options.temperature": 0.3,
                    "progress": False, "resume": True, "devices": 2, "encoder_options.model_path": "/m", "lr": 0.5}
    cfg = load_config(None, over)
    assert (cfg.dataset_options, cfg.loss_options, cfg.progress, cfg.devices) == (
        {"max_examples_per_split": 7}, {"temperature": 0.3}, False, 2)
    assert _overrides(parser.parse_args(["compare", "--output", "somewhere"]), "compare") == {}


def test_nested_overrides_merge_into_the_yaml_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss_options: {temperature: 0.5, chunk_size: 64}\n")
    cfg = load_config(path, {"loss_options.temperature": 0.1})
    assert cfg.loss_options == {"temperature": 0.1, "chunk_size": 64}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bogus'\]"):
        load_config(None, {"bogus.x": 1})
    assert np.isclose(load_config(path).loss_options["temperature"], 0.5)


def test_encoder_lr_ratio_gives_the_pretrained_encoder_its_own_rate():
    from mlsupcon.training.modules import ClassifierModule

    encoder, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    same = ClassifierModule(encoder, head, lr=1e-3, weight_decay=0.0).param_groups()
    assert len(same) == 1 and len(same[0]["params"]) == 4
    groups = ClassifierModule(encoder, head, lr=1e-3, weight_decay=0.0, encoder_lr_ratio=0.1).param_groups()
    assert [len(g["params"]) for g in groups] == [2, 2]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in encoder.parameters()}
    assert "lr" not in groups[0] and groups[1]["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, True, "0.1"])
def test_encoder_lr_ratio_is_checked(bad):
    with pytest.raises(ValueError, match="encoder_lr_ratio"):
        TrainConfig(encoder_lr_ratio=bad).validate()
