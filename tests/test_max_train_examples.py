"""``max_train_examples``: a seeded, nested subsample of the training split only."""

import pytest

from mlsupcon.data.registry import dataset_options, load_dataset


def test_only_train_is_cut_and_the_subsets_are_nested():
    full = load_dataset("yeast")
    small = load_dataset("yeast", max_train_examples=100)
    mid = load_dataset("yeast", max_train_examples=400)
    assert len(small.splits["train"]) == 100 and len(mid.splits["train"]) == 400
    for name in ("validation", "test"):
        assert small.splits[name].ids == full.splits[name].ids
    assert set(small.splits["train"].ids) <= set(mid.splits["train"].ids)
    assert small.info["options"]["max_train_examples"] == 100
    assert small.info["max_train_examples"]["train_before_after"] == [len(full.splits["train"]), 100]


def test_the_subsample_is_fixed_by_the_dataset_seed_and_changes_with_it():
    a = load_dataset("yeast", max_train_examples=50)
    b = load_dataset("yeast", max_train_examples=50)
    c = load_dataset("yeast", max_train_examples=50, seed=1)
    assert a.splits["train"].ids == b.splits["train"].ids
    assert a.splits["train"].ids != c.splits["train"].ids


def test_more_than_the_split_keeps_it_whole_and_bad_values_name_the_option():
    full = load_dataset("yeast")
    assert len(load_dataset("yeast", max_train_examples=10**6).splits["train"]) == len(full.splits["train"])
    assert "max_train_examples" in dataset_options("jsonl")
    with pytest.raises(ValueError, match="max_train_examples must be a positive integer"):
        load_dataset("yeast", max_train_examples=0)


def test_a_contrastive_stage_scores_its_logged_validation_loss_on_the_first_1024_examples_only():
    from types import SimpleNamespace

    from mlsupcon.training.stages import CONTRASTIVE_VALIDATION_EXAMPLES, _val_batch_limit

    assert CONTRASTIVE_VALIDATION_EXAMPLES == 1024
    assert _val_batch_limit("contrastive", SimpleNamespace(batch_size=64)) == 16
    assert _val_batch_limit("contrastive", SimpleNamespace(batch_size=1000)) == 2
    assert _val_batch_limit("contrastive", SimpleNamespace(batch_size=4096)) == 1
    assert _val_batch_limit("classifier", SimpleNamespace(batch_size=64)) == 1.0  # selection needs all of it
    assert _val_batch_limit("end-to-end", SimpleNamespace(batch_size=64)) == 1.0
