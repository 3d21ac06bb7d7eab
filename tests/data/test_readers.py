import numpy as np
import pytest
import scipy.io
from PIL import Image

from styleseg.data.readers import CCPReader, ParsingFolderReader, open_source
from styleseg.errors import DataError


def test_ccp_reader_splits_and_unlabeled(tiny_ccp):
    reader = open_source(tiny_ccp)
    assert isinstance(reader, CCPReader)
    by_id = {s.id: s for s in reader.samples}
    assert by_id["0001"].split == "train" and by_id["0001"].mask_path is not None
    assert by_id["0805"].split == "val"
    assert by_id["1005"].split == "train" and by_id["1005"].mask_path is None
    assert reader.read_mask(by_id["1005"]) is None
    mask = reader.read_mask(by_id["0001"])
    assert mask.dtype == np.uint8 and mask.shape == (66, 44)
    assert len(reader.source_labels) == 59


def test_paired_reader(tiny_paired):
    reader = open_source(tiny_paired)
    assert isinstance(reader, ParsingFolderReader) and reader.name == "paired"
    assert reader.source_labels == ("background", "person", "bag")
    sample = reader.samples[0]
    mask = reader.read_mask(sample)
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert {s.split for s in reader.samples} <= {"train", "val"}
    # the split depends on the name alone
    assert [s.split for s in open_source(tiny_paired).samples] == [s.split for s in reader.samples]


def test_paired_split_files_override_hash(tiny_paired):
    (tiny_paired / "splits").mkdir()
    (tiny_paired / "splits" / "test.txt").write_text("s000\ns001\n")
    splits = {s.id: s.split for s in open_source(tiny_paired).samples}
    assert splits["s000"] == "test" and splits["s001"] == "test"


def test_labeled_photo_without_annotation(tiny_ccp):
    (tiny_ccp / "annotations" / "pixel-level" / "0003.mat").unlink()
    with pytest.raises(DataError, match=r"0003\.jpg: labeled photo has no pixel-level annotation"):
        open_source(tiny_ccp)


def test_annotation_without_photo(tiny_ccp):
    (tiny_ccp / "photos" / "0004.jpg").unlink()
    with pytest.raises(DataError, match=r"0004\.mat: annotation has no photo"):
        open_source(tiny_ccp)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="folder is empty"):
        open_source(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        open_source(tmp_path / "nope")


def test_ccp_without_photos(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "annotations" / "pixel-level").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "label_list.mat", {"label_list": np.array([[np.array(["null"])]], dtype=object)})
    with pytest.raises(DataError, match="no photos found"):
        open_source(tmp_path)


def test_rgb_mask_is_rejected(tiny_paired):
    path = tiny_paired / "masks" / "s000.png"
    Image.fromarray(np.zeros((48, 32, 3), np.uint8)).save(path)
    reader = open_source(tiny_paired)
    with pytest.raises(DataError, match="s000.png: mask must be a single-channel or palette PNG"):
        reader.read_mask(reader.samples[0])


def test_corrupt_annotation(tiny_ccp):
    (tiny_ccp / "annotations" / "pixel-level" / "0002.mat").write_bytes(b"not a mat file")
    reader = CCPReader(tiny_ccp)
    sample = next(s for s in reader.samples if s.id == "0002")
    with pytest.raises(DataError, match="0002.mat"):
        reader.read_mask(sample)
