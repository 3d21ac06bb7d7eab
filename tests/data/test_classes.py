import numpy as np
import pytest

from styleseg.data.classes import CCP_LABELS, get_class_map
from styleseg.errors import DataError


def test_ccp12_merges_every_ccp_label():
    cm = get_class_map("ccp-12")
    assert cm.classes[0] == "background" and cm.num_classes == 12
    lut = cm.source_lut(CCP_LABELS, "ccp")
    assert lut[CCP_LABELS.index("null")] == 0
    assert cm.classes[lut[CCP_LABELS.index("jeans")]] == "pants"
    assert cm.classes[lut[CCP_LABELS.index("wallet")]] == "bag"
    assert cm.classes[lut[CCP_LABELS.index("sunglasses")]] == "accessories"
    assert cm.classes[lut[CCP_LABELS.index("panties")]] == "skirt-shorts"
    assert set(lut) == set(range(12))


@pytest.mark.parametrize("name", ["ccp-12", "ccp-full", "person"])
def test_levels_refine_and_palettes_are_distinct(name):
    cm = get_class_map(name)
    levels = cm.levels()
    assert levels[-1].names == cm.classes
    for level in levels:
        assert len(set(level.palette)) == level.num_classes
        assert level.names[0] == "background" and level.fine_to_group[0] == 0
    for coarse, fine in zip(levels, levels[1:]):
        # every fine group lies inside exactly one coarse group
        for g in range(fine.num_classes):
            members = [c for c, grp in enumerate(fine.fine_to_group) if grp == g]
            assert len({coarse.fine_to_group[c] for c in members}) == 1


def test_ccp_full_keeps_59_labels():
    cm = get_class_map("ccp-full")
    assert cm.num_classes == 59
    np.testing.assert_array_equal(cm.source_lut(CCP_LABELS, "ccp"), np.arange(59))


def test_user_map_from_yaml(tmp_path):
    path = tmp_path / "map.yaml"
    others = "".join(f"  {label}: upper\n" for label in CCP_LABELS if label not in {"null", "t-shirt", "jeans"})
    path.write_text(
        "name: upper-lower\nmapping:\n  null: background\n  t-shirt: upper\n  jeans: lower\n"
        + others
        + "coarse_levels:\n  - background: [background]\n    person: [upper, lower]\n"
    )
    cm = get_class_map(str(path))
    assert cm.classes == ("background", "upper", "lower")
    assert [lvl.num_classes for lvl in cm.levels()] == [2, 3]
    assert cm.classes[cm.source_lut(CCP_LABELS, "ccp")[CCP_LABELS.index("jeans")]] == "lower"


def test_user_map_unknown_class_name_is_an_error(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("classes: [background, top]\nmapping:\n  null: background\n  shirt: shirtz\n")
    with pytest.raises(DataError, match="unknown class names \\['shirtz'\\]"):
        get_class_map(str(path))


def test_user_map_that_leaves_labels_unmapped_is_an_error(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("mapping:\n  null: background\n  shirt: top\n")
    with pytest.raises(DataError, match="are not in class map"):
        get_class_map(str(path)).source_lut(CCP_LABELS, "ccp")


def test_unknown_builtin_name():
    with pytest.raises(DataError, match="unknown class map"):
        get_class_map("ccp-13")
