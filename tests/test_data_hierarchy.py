"""Label hierarchies: generic trees, facet prefixes, ICD chapters/categories."""

import numpy as np
import pytest
import torch

from mlsupcon.data import (
    LabelHierarchy,
    detect_icd_version,
    icd_category,
    icd_chapter,
    icd_hierarchy,
    prefix_hierarchy,
)
from mlsupcon.data.hierarchy import mapping_hierarchy


def test_two_level_levels_any_child_rule():
    h = LabelHierarchy(["a1", "a2", "b1"], ["a", "b"], [0, 0, 1])
    y = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    coarse, fine = h.levels(y)
    assert fine is y
    assert coarse.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    assert coarse.dtype == y.dtype
    # int and bool inputs keep their dtype; leading batch dims are fine
    assert h.levels(y.long())[0].dtype == torch.long
    assert h.levels(y.bool()[None])[0].shape == (1, 4, 2)


def test_from_paths_three_levels_and_parent_arrays():
    h = LabelHierarchy.from_paths(
        ["x1", "x2", "y1", "z1"],
        [("A", "x"), ("A", "x"), ("A", "y"), ("B", "z")],
        level_titles=["top", "mid", "leaf"],
    )
    assert h.depth == 3
    assert h.names[0] == ["A", "B"]
    assert h.coarse_names == ["x", "y", "z"]
    assert h.parent.tolist() == [0, 0, 1, 2]
    assert h.parents[0].tolist() == [0, 0, 1]
    assert h.ancestors_of("y1") == ["A", "y"]
    top, mid, leaf = h.levels(torch.tensor([[0, 0, 1, 0]]))
    assert top.tolist() == [[1, 0]] and mid.tolist() == [[0, 1, 0]]
    assert h.parent_matrix().shape == (4, 3)


def test_subset_and_roundtrip():
    h = LabelHierarchy.from_paths(["a1", "a2", "b1"], [("a",), ("a",), ("b",)])
    s = h.subset([2, 0])
    assert s.fine_names == ["b1", "a1"] and s.coarse_names == ["a", "b"] and s.parent.tolist() == [1, 0]
    assert h.subset([0, 1]).coarse_names == ["a"]  # childless coarse labels vanish
    assert LabelHierarchy.from_dict(h.to_dict()) == h


def test_hierarchy_errors():
    with pytest.raises(ValueError, match="2 entries but there are 3"):
        LabelHierarchy(["a", "b", "c"], ["x"], [0, 0])
    with pytest.raises(ValueError, match="without any fine label"):
        LabelHierarchy(["a"], ["x", "y"], [0])
    with pytest.raises(ValueError, match="two parents"):
        LabelHierarchy.from_paths(["a", "b"], [("A", "m"), ("B", "m")])
    h = LabelHierarchy(["a"], ["x"], [0])
    with pytest.raises(ValueError, match="columns"):
        h.levels(torch.zeros(2, 3))


def test_prefix_and_mapping():
    h = prefix_hierarchy(["use::editing", "use::viewing", "role::program", "plain"])
    assert h.coarse_of("use::editing") == "use"
    assert h.coarse_of("plain") == "plain"
    assert h.level_titles == ["facet", "tag"]
    m = mapping_hierarchy(["cat", "car"], {"cat": "animal", "car": "vehicle"})
    assert m.coarse_names == ["animal", "vehicle"]


@pytest.mark.parametrize(
    "code,category,chapter_start",
    [
        ("428.0", "428", "ICD-9 390-459"),
        ("042", "042", "ICD-9 001-139"),
        ("4280", "428", "ICD-9 390-459"),  # undotted diagnosis
        ("V12.54", "V12", "ICD-9 V01-V91"),
        ("E812.0", "E812", "ICD-9 E000-E999"),  # E codes: first 4 characters
        ("96.04", "proc:96", "ICD-9 procedures 87-99"),
        ("38.93", "proc:38", "ICD-9 procedures 35-39"),
        ("I50.9", "I50", "ICD-10 I00-I99"),
        ("I10.", "I10", "ICD-10 I00-I99"),  # Edin et al. write 3-character codes with a trailing dot
        ("D50.0", "D50", "ICD-10 D50-D89"),
        ("D49.2", "D49", "ICD-10 C00-D49"),
        ("H60.1", "H60", "ICD-10 H60-H95"),
        ("O9A.1", "O9A", "ICD-10 O00-O9A"),
        ("S72.001A", "S72", "ICD-10 S00-T88"),
        ("0DTJ4ZZ", "pcs:0DT", "ICD-10-PCS 0"),
    ],
)
def test_icd_single_codes(code, category, chapter_start):
    assert icd_category(code) == category
    assert icd_chapter(code).startswith(chapter_start)


def test_icd_version_detection():
    assert detect_icd_version(["428.0", "96.04", "V12.54"]) == 9
    assert detect_icd_version(["I50.9", "0DTJ4ZZ", "Z38.00"]) == 10
    assert detect_icd_version([]) == 9


def test_icd_hierarchy_levels():
    codes = ["428.0", "428.1", "401.9", "96.04", "V12.54", "E812.0"]
    h = icd_hierarchy(codes)
    assert h.level_titles == ["chapter", "category", "code"]
    assert h.coarse_of("428.0") == "428" and h.coarse_of("E812.0") == "E812"
    assert h.ancestors_of("401.9") == ["ICD-9 390-459: circulatory system", "401"]
    y = torch.zeros(1, len(codes))
    y[0, codes.index("428.1")] = 1
    chapter, category, code = h.levels(y)
    assert category[0, h.coarse_names.index("428")] == 1 and category.sum() == 1
    assert chapter.sum() == 1
    flat = icd_hierarchy(codes, chapters=False)
    assert flat.depth == 2 and flat.names[0] == h.names[1]


def test_icd_procedure_codes_and_pcs_collision():
    # Undotted codes: procedure status must be given to tell 9604 (96.04) from 960.4
    h = icd_hierarchy(["4280", "9604"], procedure_codes=["9604"], chapters=False)
    assert h.coarse_of("9604") == "proc:96" and h.coarse_of("4280") == "428"
    # ICD-10-PCS D70 (radiation therapy) must not merge with ICD-10-CM D70 (neutropenia)
    h10 = icd_hierarchy(["D70.1", "D7021ZZ"], chapters=False)
    assert h10.coarse_of("D70.1") == "D70" and h10.coarse_of("D7021ZZ") == "pcs:D70"
    with pytest.raises(ValueError, match="icd_version"):
        icd_hierarchy(["428.0"], version=11)


def test_levels_on_numpy_input():
    h = LabelHierarchy(["a1", "b1"], ["a", "b"], np.array([0, 1]))
    assert h.levels(np.array([[1, 0]]))[0].tolist() == [[1, 0]]


def test_pickle_drops_device_cache():
    import pickle

    h = LabelHierarchy(["a1", "b1"], ["a", "b"], [0, 1])
    h.levels(torch.ones(1, 2))
    h2 = pickle.loads(pickle.dumps(h))
    assert h2 == h and h2._cache == {}
    assert h2.levels(torch.tensor([[0.0, 1.0]]))[0].tolist() == [[0.0, 1.0]]
