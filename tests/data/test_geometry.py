import numpy as np
import torch

from styleseg.data.geometry import (
    FIT_MODES,
    area_fractions,
    fit_aspect,
    letterbox_image,
    letterbox_mask,
    letterbox_padding,
    soft_onehot,
)


def test_letterbox_pads_only_the_short_axis_least():
    assert letterbox_padding(832, 550, 96, 64) == (0, 0, 2, 3)  # 832/1.5 = 554.67 -> 555 wide
    assert letterbox_padding(600, 400, 96, 64) == (0, 0, 0, 0)
    top, bottom, left, right = letterbox_padding(400, 400, 96, 64)
    assert (left, right) == (0, 0) and top + bottom == 200


def test_letterbox_image_shape_and_edge_padding():
    img = np.zeros((90, 40, 3), np.uint8)
    img[:, :2] = 255  # a bright column at the left edge is repeated into the 10-pixel left padding
    out = letterbox_image(img, (48, 32))
    assert out.shape == (48, 32, 3) and out.dtype == np.uint8
    assert out[:, 0].mean() > 200


def test_image_and_mask_get_the_same_padding():
    """Whatever the pad shows in the image, the mask labels as the same thing: a person touching the
    left edge continues into the pad as person in both (reflect vs background once disagreed)."""
    img = np.full((90, 40, 3), 200, np.uint8)
    mask = np.zeros((90, 40), np.uint8)
    img[:, :6] = 20  # a dark "person" column at the left edge...
    mask[:, :6] = 3  # ...labelled class 3
    for fit in FIT_MODES:
        out_img = letterbox_image(img, (48, 32), fit)
        out_mask = letterbox_mask(mask, (48, 32), 8, fit)
        dark = out_img.mean(-1) < 110
        labelled = out_mask == 3
        assert (dark == labelled).mean() > 0.95, fit  # at most the resampled boundary column differs
    assert fit_aspect(mask, (48, 32), "crop").shape == (60, 40)


def test_mask_fractions_sum_to_one_and_never_invent_ids():
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array([0, 3, 7], np.uint8), size=(83, 55))
    fr = area_fractions(mask, 12, (12, 8))
    np.testing.assert_allclose(fr.sum(0), 1.0, atol=1e-5)
    assert np.all(fr[[1, 2, 4, 5, 6, 8, 9, 10, 11]] == 0)
    small = letterbox_mask(mask, (12, 8), 12)
    assert set(np.unique(small)) <= {0, 3, 7}


def test_mask_majority_class_wins():
    mask = np.zeros((4, 4), np.uint8)
    mask[:, :3] = 5  # 75% of the single output pixel
    assert letterbox_mask(mask, (1, 1), 8)[0, 0] == 5


def test_soft_onehot_downsampling_sums_to_one():
    masks = torch.randint(0, 5, (2, 8, 8))
    soft = soft_onehot(masks, 5, factor=4)
    assert soft.shape == (2, 5, 2, 2)
    torch.testing.assert_close(soft.sum(1), torch.ones(2, 2, 2))
