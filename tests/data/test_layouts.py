"""Readers of the human-parsing folder layouts and COCO JSON, each on tiny data made in its layout."""

import json

import numpy as np
import pytest
from PIL import Image

from styleseg.data.classes import LIP_LABELS, get_class_map
from styleseg.data.prepare import prepare_dataset
from styleseg.data.readers import open_source
from styleseg.data.samples import hash_split
from styleseg.data.store import PreparedDataset
from styleseg.data.synthetic import draw_lip_person
from styleseg.errors import DataError
from tests.conftest import make_coco, make_parsing, save_label_png


def test_viton_layout_reads_lip_labels_and_splits_by_name_hash(tiny_viton):
    reader = open_source(tiny_viton)
    assert reader.name == "viton" and reader.default_class_map == "lip-12"
    assert reader.source_labels == tuple(LIP_LABELS)
    assert len(reader.samples) == 20
    assert all(s.split == hash_split(s.id) for s in reader.samples)
    mask = reader.read_mask(reader.samples[0])
    assert mask.shape == (32, 24) and {14, 15} <= set(np.unique(mask))


def test_viton_prepares_with_no_class_option(tiny_viton, tmp_path):
    meta = prepare_dataset(tiny_viton, tmp_path / "p", (16, 12), None, workers=1)
    assert meta["classes"]["name"] == "lip-12" and meta["num_samples"] == 20
    ds = PreparedDataset(tmp_path / "p")
    assert [lvl.num_classes for lvl in ds.class_map.levels()] == [2, 5, 12]
    assert meta["image_mips"] == [2, 4] and ds.image_mips[2].shape[1:3] == (8, 6)


@pytest.mark.parametrize(
    "folders",
    [
        [("train_images", "train_segmentations"), ("val_images", "val_segmentations")],  # LIP
        [("Training/Images", "Training/Category_ids"), ("Validation/Images", "Validation/Category_ids")],  # CIHP
    ],
)
def test_lip_and_cihp_layouts_take_splits_from_folders(tmp_path, folders):
    root = tmp_path / "ds"
    make_parsing(root, *folders[0], 4, seed=1)
    val_root = tmp_path / "val"
    make_parsing(val_root, *folders[1], 3, seed=2)
    for sub in folders[1]:
        for f in (val_root / sub).iterdir():
            (root / sub).mkdir(parents=True, exist_ok=True)
            f.rename(root / sub / f"v{f.name}")
    reader = open_source(root)
    assert reader.default_class_map == "lip-12"
    assert sorted(s.split for s in reader.samples) == ["train"] * 4 + ["val"] * 3
    meta = prepare_dataset(root, tmp_path / "p", (16, 12), "lip-20", workers=1)
    assert meta["counts"]["val"]["labeled"] == 3


@pytest.mark.parametrize("form", ["list", "dict", "txt"])
def test_names_only_class_list(tiny_paired, tmp_path, form):
    (tiny_paired / "classes.json").unlink()
    names = ["background", "person", "bag"]
    if form == "list":
        (tiny_paired / "classes.json").write_text(json.dumps(names))
    elif form == "dict":
        (tiny_paired / "classes.json").write_text(json.dumps({"classes": names}))
    else:
        (tiny_paired / "classes.txt").write_text("\n".join(names) + "\n")
    meta = prepare_dataset(tiny_paired, tmp_path / "p", (24, 16), None, workers=1)
    assert [c["name"] for c in meta["classes"]["classes"]] == names
    assert len({tuple(c["color"]) for c in meta["classes"]["classes"]}) == 3


def test_user_folder_names_and_a_class_map_for_ids(tmp_path):
    root = make_parsing(tmp_path / "mine", "photos_rgb", "labels", 5)
    with pytest.raises(DataError, match="not a known dataset layout; looked for .*image/ & image-parse/ \\(viton\\)"):
        open_source(root)
    with pytest.raises(DataError, match="no classes.json or classes.txt"):
        prepare_dataset(root, tmp_path / "p", (16, 12), None, workers=1, image_dir="photos_rgb", mask_dir="labels")
    meta = prepare_dataset(
        root, tmp_path / "p", (16, 12), "lip-20", workers=1, image_dir="photos_rgb", mask_dir="labels"
    )
    assert meta["num_samples"] == 5 and meta["classes"]["name"] == "lip-20"


def test_mask_of_another_size_names_the_file(tiny_viton, tmp_path):
    bad = tiny_viton / "image-parse" / "000003_0.png"
    save_label_png(np.zeros((10, 10), np.uint8), bad)
    with pytest.raises(DataError, match=r"000003_0\.png: mask is 10x10 \(HxW\) but its photo 000003_0\.jpg is 32x24"):
        prepare_dataset(tiny_viton, tmp_path / "p", (16, 12), None, workers=1)
    assert not (tmp_path / "p").exists()


def test_mask_id_outside_the_label_list_names_the_file(tiny_viton, tmp_path):
    mask = np.zeros((32, 24), np.uint8)
    mask[0, 0] = 42
    save_label_png(mask, tiny_viton / "image-parse" / "000005_0.png")
    with pytest.raises(DataError, match=r"000005_0\.png: label id 42 is outside the 20 labels"):
        prepare_dataset(tiny_viton, tmp_path / "p", (16, 12), None, workers=1)


# ----- COCO -----
pytest.importorskip("pycocotools")


def test_coco_polygons_and_rle_with_smaller_on_top(tmp_path):
    root = make_coco(tmp_path / "coco", None)
    reader = open_source(root)
    assert reader.name == "coco" and reader.source_labels == ("background", "dress", "belt")
    by_id = {s.id: s for s in reader.samples}
    assert {s.split for s in reader.samples} == {"train"}
    a = reader.read_mask(by_id["a"])
    assert a[10, 10] == 1 and a[19, 10] == 2 and a[2, 2] == 0  # belt painted over the dress
    b = reader.read_mask(by_id["b"])
    assert (b[30:] == 1).all() and (b[:30] == 0).all()
    meta = prepare_dataset(root, tmp_path / "p", (16, 12), None, workers=1)
    assert meta["num_samples"] == 2 and meta["source"]["layout"] == "coco"


def test_coco_unknown_category_names_the_file(tmp_path):
    anns = [{"id": 9, "image_id": 1, "category_id": 5, "area": 1.0, "segmentation": [[1, 1, 3, 1, 3, 3]]}]
    root = make_coco(tmp_path / "coco", anns)
    with pytest.raises(DataError, match=r"instances_train\.json: annotation 9 has category id 5"):
        open_source(root)


def test_coco_category_missing_from_the_class_map(tmp_path):
    root = make_coco(tmp_path / "coco", None)
    (tmp_path / "map.yaml").write_text("mapping: {background: background, dress: garment}\n")
    with pytest.raises(DataError, match=r"labels \['belt'\] are not in class map"):
        prepare_dataset(root, tmp_path / "p", (16, 12), str(tmp_path / "map.yaml"), workers=1)


# ----- left and right -----
def test_flipping_a_mask_swaps_left_and_right_arm(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "v"
    (root / "image").mkdir(parents=True)
    (root / "image-parse").mkdir()
    img, mask = draw_lip_person(32, 24, rng)
    mask[:] = 0
    mask[8:16, 2:6] = LIP_LABELS.index("left-arm")  # the person's left arm, at the image's left
    Image.fromarray(img).save(root / "image" / "x_0.jpg")
    save_label_png(mask, root / "image-parse" / "x_0.png")
    prepare_dataset(root, tmp_path / "p", (32, 24), "lip-20", workers=1)
    ds = PreparedDataset(tmp_path / "p")
    left, right = LIP_LABELS.index("left-arm"), LIP_LABELS.index("right-arm")
    _, plain = ds.load_batch(np.array([0]))
    _, flipped = ds.load_batch(np.array([0]), flip=np.array([True]))
    assert (plain[0, 8:16, 2:6] == left).all()
    assert (flipped[0, 8:16, -6:-2] == right).all() and not (flipped == left).any()


def test_merged_map_needs_no_swap_and_split_pairs_are_refused():
    lip12 = get_class_map("lip-12")
    assert (lip12.mirror_lut() == np.arange(12)).all()
    lip20 = get_class_map("lip-20")
    levels = lip20.levels()
    arms = levels[1].names.index("arms")
    assert levels[1].mirror_lut()[arms] == arms  # both arms in one group: the group maps to itself
    assert levels[-1].mirror_lut()[LIP_LABELS.index("left-shoe")] == LIP_LABELS.index("right-shoe")
    from styleseg.data.classes import ClassMap

    with pytest.raises(DataError, match="holds only one side of a left/right pair"):
        ClassMap(  # group "a" holds the left side and a class of no side: a mirror would split it
            "bad",
            ("background", "left", "right", "hat"),
            ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)),
            coarse_levels=((("background", ("background",)), ("a", ("left", "hat")), ("b", ("right",))),),
            mirror_pairs=(("left", "right"),),
        )
