"""Metric functions on cases with known answers."""

import numpy as np
import pytest
import torch

from styleseg.metrics.distribution import (
    frechet_distance,
    js_divergence,
    kernel_inception_distance,
    mmd2_unbiased,
    precision_recall,
)
from styleseg.metrics.labels import class_frequencies, classes_per_image, components_per_class, person_extent
from styleseg.metrics.segmentation import (
    agreement_interval,
    bootstrap_miou,
    confusion_matrix,
    confusion_text,
    excess_confusions,
    iou_per_class,
    mean_iou,
    miou_over,
    pixel_accuracy,
    ratio_over_shared_classes,
    sample_confusion_matrices,
)


def test_miou_with_absent_classes():
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    cm = confusion_matrix(target, pred, 4)  # classes 2 and 3 absent from both: not scored
    ious = iou_per_class(cm)
    assert ious[0] == pytest.approx(1 / 2) and ious[1] == pytest.approx(2 / 3)
    assert np.isnan(ious[2]) and np.isnan(ious[3])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert pixel_accuracy(cm) == pytest.approx(3 / 4)
    # a class predicted but absent from the target scores 0 and counts
    assert mean_iou(confusion_matrix(np.array([0, 0]), np.array([0, 2]), 3)) == pytest.approx((1 / 2 + 0) / 2)


def test_frechet_distance_identical_and_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # N(0, I) vs N(mu, s^2 I): |mu|^2 + d (1 - s)^2
    mu, s = np.array([1.0, -2.0, 0.5]), 2.0
    b = rng.normal(size=(200000, 3)) * s + mu
    c = rng.normal(size=(200000, 3))
    assert frechet_distance(c, b) == pytest.approx(np.sum(mu**2) + 3 * (1 - s) ** 2, rel=0.02)


def test_kid_unbiased_estimate():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    d = 4
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    want = (kxx.sum() - np.trace(kxx)) / (50 * 49) + (kyy.sum() - np.trace(kyy)) / (50 * 49) - 2 * kxy.mean()
    assert mmd2_unbiased(x, y) == pytest.approx(want)
    # unbiased: same distribution averages to about 0, shifted one is clearly positive
    same, _ = kernel_inception_distance(rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4)), subsets=50)
    shifted, _ = kernel_inception_distance(rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4)) + 1, subsets=50)
    assert abs(same) < 0.02 and shifted > 0.3


def test_precision_recall_by_hand_on_a_line():
    # k = 1 on a line: real at 0, 1, 2, 10 (radii 1, 1, 1, 8); fake at 0.5, 1.5, 30 (radii 1, 1, 28.5)
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [1.5], [30.0]])
    pr = precision_recall(real, fake, k=1)
    assert pr["precision"] == pytest.approx(2 / 3)  # 30 lies in no real ball
    assert pr["recall"] == pytest.approx(1.0)  # 30's ball (28.5) reaches 2 and 10; the rest lie near 0.5, 1.5
    assert pr["coverage"] == pytest.approx(3 / 4)  # 10's nearest fake (1.5, 8.5 away) is outside its ball of 8
    # balls holding 0.5: real 0, 1 (and not 2: 1.5 away); holding 1.5: real 1, 2; holding 30: none
    assert pr["density"] == pytest.approx((2 + 2 + 0) / 3)


def test_precision_recall_see_a_dropped_mode_and_a_perfect_sample():
    rng = np.random.default_rng(0)
    modes = np.array([[0.0] * 8, [20.0] * 8])
    real = rng.normal(size=(800, 8)) + modes[rng.integers(0, 2, 800)]
    same = rng.normal(size=(800, 8)) + modes[rng.integers(0, 2, 800)]
    one_mode = rng.normal(size=(800, 8)) + modes[0]
    perfect, dropped = precision_recall(real, same), precision_recall(real, one_mode)
    assert precision_recall(real, same, chunk=37) == perfect  # chunked comparisons give the same figures
    assert perfect["precision"] > 0.8 and perfect["recall"] > 0.8 and perfect["coverage"] > 0.8
    assert 0.8 < perfect["density"] < 1.2
    assert dropped["precision"] > 0.8  # what it draws is realistic ...
    assert dropped["recall"] < 0.55 and dropped["coverage"] < 0.55  # ... but half the reals are never drawn
    far = precision_recall(real, one_mode + 100)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0
    with pytest.raises(ValueError, match="more than 3 samples"):
        precision_recall(real, one_mode[:3])


def test_evaluate_scores_generated_images_beside_as_many_real_photos():
    from styleseg.evaluate import manifold_scores

    rng = np.random.default_rng(1)
    held, train = rng.normal(size=(300, 6)), rng.normal(size=(2000, 6))
    gen = rng.normal(size=(400, 6)) * 0.3  # a collapsed generator: realistic, not diverse
    s = manifold_scores(held, train, gen)
    assert s["real_train_photos"]["recall"] > 0.8 and s["generated"]["recall"] < 0.5
    assert s["generated"]["precision"] > 0.9
    assert manifold_scores(held[:3], train, gen) == {"skipped": "needs more than 3 held-out reals and generated pairs"}


def test_js_divergence_bounds():
    assert js_divergence([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1)
    assert 0 < js_divergence([0.7, 0.3], [0.4, 0.6]) < 1


def test_fragmentation_and_extent_on_drawn_shapes():
    m = np.zeros((1, 10, 10), np.uint8)
    m[0, 1:3, 1:3] = 1  # two separate blobs of class 1
    m[0, 6:8, 6:8] = 1
    m[0, 2:9, 4] = 2  # one bar of class 2, rows 2..8
    comps = components_per_class(m, 4)
    assert comps[1] == 2 and comps[2] == 1 and np.isnan(comps[3])
    area, height = person_extent(m)
    assert area[0] == pytest.approx((4 + 4 + 7) / 100) and height[0] == pytest.approx(8 / 10)
    assert classes_per_image(m, 4).tolist() == [2]
    assert class_frequencies(m, 4)[0] == pytest.approx(0.85)


def test_fd_path_end_to_end_with_a_stand_in_feature_network():
    """The Fréchet pipeline (features -> statistics -> distance) with a tiny fixed network."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    real = torch.rand(300, 3, 16, 16)
    with torch.no_grad():
        f_real = net(real).double().numpy()
        f_same = net(real.flip(0)).double().numpy()
        f_dark = net(real * 0.3).double().numpy()
    assert frechet_distance(f_real, f_same) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(f_real, f_dark) > 10 * frechet_distance(
        f_real, net(torch.rand(300, 3, 16, 16)).detach().double().numpy()
    )


def test_segmenter_cache_fingerprint_follows_content(tiny_ccp, tmp_path):
    from styleseg.data.prepare import prepare_dataset
    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmenter_train import fingerprint
    from styleseg.options import SegmenterConfig

    prepare_dataset(tiny_ccp, tmp_path / "a", (24, 16), "ccp-12", workers=1)
    prepare_dataset(tiny_ccp, tmp_path / "b", (24, 16), "ccp-12", workers=1)  # same content, another time
    a, b = PreparedDataset(tmp_path / "a"), PreparedDataset(tmp_path / "b")
    cfg = SegmenterConfig(num_classes=12)
    idx = a.indices("train", labeled_only=True)
    assert fingerprint([(a, idx)], cfg) == fingerprint([(b, idx)], cfg)
    assert fingerprint([(a, idx)], cfg) != fingerprint([(a, idx[:5])], cfg)
    assert fingerprint([(a, idx)], cfg) != fingerprint([(a, idx)], SegmenterConfig(num_classes=12, width=8))
    # the selection set counts by content, not by the folder it lies in
    val = a.indices("val", labeled_only=True)
    assert fingerprint([(a, idx)], cfg, select=(a, val)) == fingerprint([(b, idx)], cfg, select=(b, val))
    assert fingerprint([(a, idx)], cfg, select=(a, val)) != fingerprint([(a, idx)], cfg, select=(a, val[:1]))
    assert fingerprint([(a, idx)], cfg, select=(a, val)) != fingerprint([(a, idx)], cfg)


def test_torchmetrics_fid_path_end_to_end_with_a_stand_in_network():
    pytest.importorskip("torchmetrics", reason="the fid extra (torchmetrics) is not installed")
    from styleseg.evaluate import inception_fid

    class StandIn(torch.nn.Module):
        num_features = 8

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

        def forward(self, x):
            return self.net(x.float() / 255)

    torch.manual_seed(1)
    real = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    same = inception_fid([real[:32], real[32:]], [real.flip(0)], None, feature=StandIn())
    other = inception_fid([real], [(real // 3).to(torch.uint8)], None, feature=StandIn())
    assert same["n_real"] == 64 and same["n_generated"] == 64
    assert same["fid"] == pytest.approx(0, abs=1e-3)
    assert other["fid"] > 1e-2


def test_reduced_frechet_uses_what_the_samples_support_and_sees_a_shift():
    from styleseg.metrics.distribution import reduced_frechet, supported_dims

    rng = np.random.default_rng(3)
    ref, a = rng.normal(size=(3000, 64)), rng.normal(size=(300, 64))
    same, dims = reduced_frechet(ref, a, a)
    assert dims == supported_dims(300, 64) == 30 and same == pytest.approx(0, abs=1e-8)
    near, _ = reduced_frechet(ref, a, rng.normal(size=(300, 64)))
    far, _ = reduced_frechet(ref, a, rng.normal(size=(300, 64)) + 1.0)
    assert far > 5 * near


def test_paired_interval_covers_zero_for_identical_regimes_and_shows_harm():
    from styleseg.metrics.usefulness import paired_difference, verdict

    rng = np.random.default_rng(4)
    # Identical regimes: the same mean, independent seed noise around a per-seed shared effect.
    covered = 0
    for _ in range(400):
        shared = rng.normal(0.5, 0.05, 3)
        d = paired_difference(list(shared + rng.normal(0, 0.01, 3)), list(shared + rng.normal(0, 0.01, 3)))
        covered += d["low"] <= 0 <= d["high"]
    assert 0.92 <= covered / 400 <= 0.98  # a calibrated 95 % interval
    same = [0.61, 0.58, 0.63]
    assert verdict(paired_difference(same, same)) == "no clear difference"
    harmed = paired_difference([0.55, 0.52, 0.58], [0.61, 0.58, 0.63])
    assert harmed["high"] < 0 and verdict(harmed) == "hurts"


def _task(n, h, w, seed, learnable):
    """Images whose mask is readable from the image (a bright square is class 1, a dark one class 2) or,
    when not learnable, masks that ignore the image."""
    rng = np.random.default_rng(seed)
    images = np.full((n, h, w, 3), 128, np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for cls, value in ((1, 250), (2, 5)):
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            images[i, y : y + 6, x : x + 6] = value
            masks[i, y : y + 6, x : x + 6] = cls
    if not learnable:
        masks = rng.integers(0, 3, masks.shape).astype(np.uint8)
    return images, masks


def _store(root, images, masks):
    from styleseg.data.classes import ClassMap
    from styleseg.data.store import write_store

    n = len(images)
    split = np.array([0] * (n - 40) + [1] * 40, np.uint8)
    write_store(root, images, masks, ClassMap.from_names(["background", "bright", "dark"], "squares"), split=split)


@pytest.mark.slow
def test_segmenter_learns_a_learnable_task_and_not_random_labels(tmp_path):
    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmenter import evaluate_segmenter, validation_halves
    from styleseg.metrics.segmenter_train import train_segmenter
    from styleseg.options import SegmenterConfig

    results = {}
    for learnable in (True, False):
        _store(tmp_path / str(learnable), *_task(200, 16, 16, 0, learnable))
        ds = PreparedDataset(tmp_path / str(learnable))
        cfg = SegmenterConfig(
            num_classes=3, width=8, max_steps=300, eval_every=50, batch=16, augment=False, dtype="fp32"
        )
        model, budget = train_segmenter(
            [(ds, ds.indices("train"))], cfg, torch.device("cpu"), (ds, validation_halves(ds)[0]), log=lambda *_: None
        )
        results[learnable] = evaluate_segmenter(model, ds, "val", torch.device("cpu"))
        assert budget["best_step"] <= budget["steps"] <= 300
    assert results[True]["miou"] > 0.8
    # random labels: a third of the pixels in each class; the best a segmenter can do is chance level
    assert results[False]["miou"] < 0.3


def test_soft_dice_weighs_a_rare_class_as_much_as_a_common_one():
    from styleseg.metrics.segmenter_train import soft_dice_loss

    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, :2, :2] = 1  # a rare class: 4 of 256 pixels
    confident = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 20
    assert soft_dice_loss(confident, target) < 1e-3  # right everywhere
    misses_rare = confident.clone()
    misses_rare[:, 1, :2, :2] = 0
    misses_rare[:, 0, :2, :2] = 20  # the rare class called background: 1.6 % of pixels wrong
    ce = torch.nn.functional.cross_entropy(misses_rare, target)
    dice = soft_dice_loss(misses_rare, target)
    assert dice > 0.45  # half the present classes (the rare one) fully missed
    assert ce < 0.35  # cross-entropy sees 1.6 % of the pixels
    # a class absent from the targets does not count (its Dice is undefined)
    assert torch.isclose(soft_dice_loss(confident[:, :2], target), soft_dice_loss(confident, target), atol=1e-4)


def test_concurrent_evaluations_train_a_cached_segmenter_once(prepared_tiny, tmp_path, monkeypatch):
    import threading

    from styleseg.data.store import PreparedDataset
    from styleseg.metrics import segmenter_train as seg
    from styleseg.options import SegmenterConfig

    ds = PreparedDataset(prepared_tiny)
    cfg = SegmenterConfig(num_classes=ds.class_map.num_classes, width=8, max_steps=4, eval_every=2, batch=4)
    trained, real_train = [], seg.train_segmenter

    def counting_train(*args, **kwargs):
        trained.append(threading.get_ident())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(seg, "train_segmenter", counting_train)
    logs = []
    sets = [(ds, ds.indices("train", labeled_only=True))]
    workers = [
        threading.Thread(
            target=seg.cached_segmenter, args=(tmp_path, sets, cfg, torch.device("cpu")), kwargs={"log": logs.append}
        )
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(trained) == 1 and any("reusing cached segmenter" in line for line in logs)


def test_repeat_factors_raise_images_by_their_rarest_class():
    from styleseg.data.balance import repeat_factors

    presence = np.zeros((20, 3), bool)
    presence[:, 0] = True  # every image: factor 1 from this class
    presence[:2, 1] = True  # 10 % of images
    presence[:5, 2] = True  # 25 % of images
    factors = repeat_factors(presence, 0.4)
    assert np.allclose(factors[:2], 2.0)  # sqrt(0.4 / 0.1): the rarest class decides, not the 25 % one
    assert np.allclose(factors[2:5], np.sqrt(0.4 / 0.25))
    assert np.allclose(factors[5:], 1.0)  # only a common class
    assert np.allclose(repeat_factors(presence, 0.05), 1.0)  # no class is rarer than the threshold


def test_rare_class_oversampling_draws_rare_images_more_often_and_keeps_dataset_shares(tmp_path):
    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmenter_train import fingerprint, sampling_probabilities
    from styleseg.options import SegmenterConfig

    images = np.zeros((60, 8, 8, 3), np.uint8)
    masks = np.zeros((60, 8, 8), np.uint8)
    masks[:3, :2, :2] = 1  # class 1 in 3 of the 20 training images
    masks[3:20, 4:, 4:] = 2
    _store(tmp_path / "a", images, masks)
    _store(tmp_path / "b", images, masks)
    a, b = PreparedDataset(tmp_path / "a"), PreparedDataset(tmp_path / "b")
    idx = a.indices("train")
    pool_ds = np.zeros(len(idx), int)
    assert sampling_probabilities([(a, idx)], pool_ds, SegmenterConfig(num_classes=3), None) is None
    on = SegmenterConfig(num_classes=3, repeat_threshold=0.6)
    p = sampling_probabilities([(a, idx)], pool_ds, on, None, log=lambda *_: None)
    assert np.isclose(p.sum(), 1) and np.allclose(p[:3] / p[3], 2.0)  # sqrt(0.6 / 0.15)
    # with two datasets at shares 1:3 each keeps its share; oversampling acts inside each
    two = sampling_probabilities([(a, idx), (b, idx)], np.repeat([0, 1], len(idx)), on, [1, 3], log=lambda *_: None)
    assert np.isclose(two[: len(idx)].sum(), 0.25) and np.allclose(two[:3] / two[3], 2.0)
    # oversampling is part of the cache key
    assert fingerprint([(a, idx)], SegmenterConfig(num_classes=3)) != fingerprint([(a, idx)], on)


def test_label_statistics_over_chunks_equal_the_whole_set():
    from styleseg.metrics.labels import LabelStatistics

    rng = np.random.default_rng(0)
    masks = (rng.random((10, 12, 8)) * 3).astype(np.uint8) * (rng.random((10, 12, 8)) > 0.3)
    stats = LabelStatistics(4)
    stats.update(masks[:4])
    stats.update(masks[4:])
    assert np.allclose(stats.frequencies, class_frequencies(masks, 4))
    assert np.allclose(stats.components_per_class, components_per_class(masks, 4), equal_nan=True)
    assert np.isnan(stats.components_per_class[3])  # class 3 never drawn
    per_image, area, height = stats.per_image()
    assert (per_image == classes_per_image(masks, 4)).all()
    assert np.allclose(area, person_extent(masks)[0]) and np.allclose(height, person_extent(masks)[1])


def test_weight_ema_returns_the_moving_average_of_weights_and_batch_norm_statistics(tmp_path, monkeypatch):
    from torch.optim.swa_utils import AveragedModel

    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmenter_train import train_segmenter
    from styleseg.options import SegmenterConfig

    _store(tmp_path / "s", *_task(60, 16, 16, 0, True))
    ds = PreparedDataset(tmp_path / "s")
    seen = []  # the raw weights and buffers after every step, as the average sees them
    update = AveragedModel.update_parameters

    def recording(self, model):
        seen.append({k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()})
        update(self, model)

    monkeypatch.setattr(AveragedModel, "update_parameters", recording)
    decay = 0.5
    cfg = SegmenterConfig(num_classes=3, width=4, max_steps=4, batch=4, augment=False, dtype="fp32", weight_ema=decay)
    model, _ = train_segmenter([(ds, ds.indices("train"))], cfg, torch.device("cpu"), None, log=lambda *_: None)
    assert len(seen) == 4
    expected = seen[0]
    for raw in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * raw[k] for k in expected}
    got = model.state_dict()
    assert all(torch.allclose(got[k].float(), v, atol=1e-6) for k, v in expected.items())
    assert not torch.allclose(got["head.weight"], seen[-1]["head.weight"])  # not the last raw weights
    assert any("running_mean" in k for k in expected)  # batch-norm statistics are averaged too


def test_ratio_to_the_ceiling_over_shared_classes_does_not_move_when_a_class_drops_out():
    ceiling = {"bg": 0.9, "shirt": 0.8, "hat": 0.0}
    with_hat = {"bg": 0.9, "shirt": 0.4, "hat": 0.0}  # the hat scored in both: 0.433 / 0.567
    without_hat = {"bg": 0.9, "shirt": 0.4, "hat": None}  # no hat in these samples: plain ratio jumps
    plain = [
        np.nanmean([v if v is not None else np.nan for v in d.values()]) / np.mean(list(ceiling.values()))
        for d in (with_hat, without_hat)
    ]
    assert plain[1] > plain[0] + 0.1
    r0, shared0 = ratio_over_shared_classes(with_hat, ceiling)
    r1, shared1 = ratio_over_shared_classes(without_hat, ceiling)
    assert shared0 == ["bg", "shirt", "hat"] and shared1 == ["bg", "shirt"]
    assert r0 == pytest.approx((1.3 / 3) / (1.7 / 3)) and r1 == pytest.approx(1.3 / 1.7)
    assert ratio_over_shared_classes({"bg": None}, {"bg": 0.9}) == (None, [])
    assert ratio_over_shared_classes({"bg": float("nan")}, {"bg": 0.9}) == (None, [])


def test_excess_confusions_name_what_generated_masks_get_read_as_beyond_the_references_habit():
    names = ["bg", "arms", "legs", "skirt", "pants"]
    real = np.diag([1000, 100, 100, 100, 100]).astype(np.int64)
    real[3, 4] = 30  # the reference reads real skirts as pants 30 / 130 of the time: its own habit
    real[3, 3] = 100
    generated = np.diag([1000, 100, 50, 40, 100]).astype(np.int64)
    generated[2, 1] = 50  # generated legs read as arms half the time (never on real masks)
    generated[3, 4] = 60  # generated skirts read as pants 60 % (real 23 %)
    found = excess_confusions(generated, real, names)
    assert [(f["class"], f["read_as"]) for f in found] == [("legs", "arms"), ("skirt", "pants")]
    assert found[0] == {"class": "legs", "read_as": "arms", "generated": 0.5, "real": 0.0, "generated_pixels": 100}
    assert found[1]["real"] == pytest.approx(30 / 130, abs=1e-4)
    assert excess_confusions(generated, real, names, limit=1) == found[:1]
    assert confusion_text(found[:1]) == "legs read as arms 50 % (real 0 %; 100 px)"
    # a class the generator never draws, or that real masks never show, has no share to compare
    generated[2] = 0
    real[3] = 0
    assert excess_confusions(generated, real, names) == []
    assert excess_confusions(real, real, names) == []  # the same reading on both sides: nothing in excess


def test_sample_confusion_matrices_are_the_per_pair_matrices_and_sum_to_the_whole():
    rng = np.random.default_rng(0)
    target, pred = rng.integers(0, 4, (5, 6, 7)), rng.integers(0, 4, (5, 6, 7))
    samples = sample_confusion_matrices(target, pred, 4)
    assert samples.shape == (5, 4, 4)
    for t, p, cm in zip(target, pred, samples):
        assert np.array_equal(cm, confusion_matrix(t, p, 4))
    assert np.array_equal(samples.sum(0), confusion_matrix(target, pred, 4))


def test_bootstrap_of_a_dataset_miou_resamples_samples_not_pixels():
    one = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    same = np.stack([one] * 6)  # every sample alike: every resample has the whole set's mIoU
    draws = bootstrap_miou(same, 50, np.random.default_rng(0))
    assert np.allclose(draws, mean_iou(one))
    # a rare class seen on one image of ten: resamples without that image drop it from the mean
    common = np.array([[90, 10], [0, 0]])
    rare = np.array([[90, 0], [5, 5]])
    real = np.stack([common] * 9 + [rare])
    draws = bootstrap_miou(real, 400, np.random.default_rng(1))
    assert draws.min() < mean_iou(real.sum(0)) < draws.max()
    generated = np.stack([np.diag([95, 5])] * 10)  # agreement perfect on every pair
    got = agreement_interval(generated, real, draws=400, seed=1)
    assert got["miou"] == [1.0, 1.0] and got["level"] == 0.95 and got["draws"] == 400
    low, high = got["ceiling"]
    assert low < mean_iou(real.sum(0)) < high and got["ratio"] == pytest.approx([1 / high, 1 / low], abs=1e-3)
    assert agreement_interval(generated, real, draws=400, seed=1) == got  # seeded: the same figures again


def test_a_class_the_generator_never_draws_counts_zero_not_out_of_the_mean():
    real = np.stack([np.diag([80, 15, 5])] * 4)  # the ceiling scores all three classes
    generated = np.stack([np.diag([85, 15, 0])] * 4)  # class 2 never drawn nor read: perfect on the rest
    scored = np.isfinite(iou_per_class(real.sum(0)))
    assert mean_iou(generated.sum(0)) == 1.0  # the plain mean sheds the missing class ...
    assert miou_over(generated.sum(0), scored) == pytest.approx(2 / 3)  # ... the ceiling's classes keep it
    assert miou_over(generated.sum(0), np.array([True, True, False])) == 1.0  # a class nobody scores is out
    assert agreement_interval(generated, real, draws=50, seed=0)["miou"] == pytest.approx([2 / 3, 2 / 3], abs=1e-4)


def test_patience_zero_runs_the_whole_budget_and_keeps_the_best(tmp_path):
    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmenter import validation_halves
    from styleseg.metrics.segmenter_train import train_segmenter
    from styleseg.options import SegmenterConfig

    _store(tmp_path, *_task(80, 16, 16, 0, learnable=False))
    ds = PreparedDataset(tmp_path)
    cfg = SegmenterConfig(
        num_classes=3, width=4, max_steps=60, eval_every=10, batch=8, augment=False, dtype="fp32", patience=0
    )
    _, budget = train_segmenter(
        [(ds, ds.indices("train"))], cfg, torch.device("cpu"), (ds, validation_halves(ds)[0]), log=lambda *_: None
    )
    # random labels: no trend to follow, yet no early stop; the best of the six scores is kept
    assert budget["steps"] == 60
    assert budget["best_step"] in range(10, 61, 10)


def test_a_negative_patience_is_refused():
    from styleseg.errors import StylesegError
    from styleseg.options import SegmenterConfig

    with pytest.raises(StylesegError, match="patience must be 0"):
        SegmenterConfig(num_classes=3, patience=-1)
