"""Pairs streamed from a generator into segmenter training: fresh at every step, reproducible from
their seeds, soft targets that are the generator's probabilities, class-targeted sampling at its
rate, and a resumed streamed run that ends where an uninterrupted one does."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.metrics.segmenter_train import (
    batch_split,
    paste_real_classes,
    segmentation_loss,
    synthetic_targets,
    train_segmenter,
)
from styleseg.models.load import load_generator
from styleseg.options import SegmenterConfig, StreamOptions
from styleseg.sampling import seed_latents, seed_z, synthesize
from styleseg.stream import PairStream, mixing_for_seeds, psi_for_seeds, rate_check, undrawn_classes
from styleseg.targeting import shows

CPU = torch.device("cpu")


@pytest.fixture
def model(checkpoint):
    return load_generator(checkpoint, CPU)


def test_streamed_latents_differ_between_steps_and_stream_seeds_at_one_truncation(model):
    # the pairs' seeds differ only above their low 32 bits, which torch's CPU generator ignores
    draws = [PairStream(model, StreamOptions(psi_range=(1, 1), seed=s), CPU, dtype="fp32") for s in (0, 1)]
    batches = [draws[0].draw(0, 2), draws[0].draw(1, 2), draws[1].draw(0, 2)]
    probs = torch.cat([b.probs for b in batches])
    for i in range(len(probs)):
        for j in range(i):
            assert not torch.allclose(probs[i], probs[j]), (i, j)


def test_streamed_batches_are_new_at_every_step_and_regenerate_from_their_seeds(model):
    stream = PairStream(model, StreamOptions(psi_range=(0.5, 1.0), seed=3), CPU, dtype="fp32")
    first, again, second = stream.draw(0, 4), stream.draw(0, 4), stream.draw(1, 4)
    assert torch.equal(first.images, again.images) and first.seeds == again.seeds
    assert not set(first.seeds) & set(second.seeds)
    assert not torch.allclose(first.images, second.images)
    assert len(set(first.seeds)) == 4
    # each pair is the pair `generate` would write for its seed and truncation
    psis = psi_for_seeds(first.seeds, 0.5, 1.0)
    assert 0.5 <= float(psis.min()) and float(psis.max()) <= 1.0 and len(set(psis.tolist())) == 4
    st = model.growth
    for k, seed in enumerate(first.seeds):
        out = synthesize(model.G, [seed], st.stage, st.alpha, st.seg_level, float(psis[k]), CPU)
        image = (out.img * 127.5 + 128).clamp(0, 255).floor() / 127.5 - 1
        # batch 1 here, 4 in the stream: float rounding may differ in the last bit, and where that
        # crosses an 8-bit level the quantised pixel moves by one level; nearly all pixels are equal
        same = (first.images[k : k + 1] - image).abs() < 1e-5
        torch.testing.assert_close(first.images[k : k + 1], image, atol=1 / 127.5 + 1e-5, rtol=0)
        assert same.float().mean() > 0.99
        # soft targets are the generator's own class probabilities
        torch.testing.assert_close(first.probs[k : k + 1], out.seg.softmax(1), atol=1e-5, rtol=0)


def test_style_mixing_mixes_its_share_of_pairs_reproducibly_and_leaves_unmixed_streams_alone(model):
    seeds = list(range(1 << 40, (1 << 40) + 20000))
    second, cuts = mixing_for_seeds(seeds, 0.3, layers=10)
    mixed = np.array(cuts) < 10
    assert abs(mixed.mean() - 0.3) < 0.02 and set(np.array(cuts)[mixed]) == set(range(1, 10))
    assert second[0] == seeds[0] + (1 << 62)
    plain = PairStream(model, StreamOptions(psi_range=(1, 1)), CPU, dtype="fp32")
    assert "style_mixing" not in plain.describe() and "mixing_rule" not in plain.describe()
    stream = PairStream(model, StreamOptions(psi_range=(1, 1), style_mixing=1.0), CPU, dtype="fp32")
    assert stream.describe()["style_mixing"] == 1.0
    batch, again = stream.draw(0, 4), stream.draw(0, 4)
    assert torch.equal(batch.images, again.images)
    unmixed = plain.draw(0, 4)
    assert batch.seeds == unmixed.seeds and not torch.allclose(batch.probs, unmixed.probs)
    # each pair is the generator's synthesis of its seed's styles up to its cut, the second latent's after
    G, st = model.G, model.growth
    second, cuts = mixing_for_seeds(batch.seeds, 1.0, 2 * (st.stage + 1))
    assert max(cuts) < 2 * (st.stage + 1) <= G.num_ws  # cuts among the layers this stage uses
    z, noise = seed_latents(G, batch.seeds, st.stage, CPU)
    with torch.no_grad():
        ws = G.styles(z, 1.0, seed_z(G, second, CPU), torch.tensor(cuts))
        _, seg = G.synthesis(ws, st.stage, st.alpha, st.seg_level, noise)
    torch.testing.assert_close(batch.probs, seg.softmax(1), atol=1e-5, rtol=0)


def test_synthetic_targets_and_the_loss_they_give():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]).T.reshape(1, 3, 1, 2)  # two pixels
    soft, weight = synthetic_targets(probs, "soft", 0.5)
    assert soft is probs and weight is None
    hard, weight = synthetic_targets(probs, "hard", 0.5)
    assert hard.tolist() == [[[0, 0]]] and weight is None
    _, weight = synthetic_targets(probs, "weighted", 0.5)
    assert torch.allclose(weight, torch.tensor([[[0.7, 0.4]]]))
    _, weight = synthetic_targets(probs, "confident", 0.5)
    assert weight.tolist() == [[[1.0, 0.0]]]
    logits = torch.randn(1, 3, 1, 2)
    want = -(probs * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(segmentation_loss(logits, None, probs), want)
    # a real row with a label and a synthetic row with a confidence cut: the cut pixel carries no loss
    logits2 = torch.randn(2, 3, 1, 2)
    labels = torch.tensor([[[2, 1]]])
    hard, weight = synthetic_targets(probs, "confident", 0.5)
    ce = torch.nn.functional.cross_entropy(logits2, torch.cat([labels, hard]), reduction="none")
    want = (ce[0].sum() + ce[1, 0, 0]) / 3
    assert torch.allclose(segmentation_loss(logits2, labels, hard, weight), want)


def test_blind_classes_get_no_gradient_from_generated_rows_and_the_rest_is_their_softmax_without_them():
    torch.manual_seed(0)
    k, blind = 4, [3]
    logits = torch.randn(3, k, 2, 5, requires_grad=True)
    labels = torch.randint(0, k, (1, 2, 5))
    probs = torch.rand(2, k, 2, 5).softmax(1)  # the generator's probabilities, some mass on class 3
    loss = segmentation_loss(logits, labels, probs, dice_weight=0.0, blind=blind)
    loss.backward()
    assert logits.grad[1:, 3].abs().max() == 0  # generated rows: nothing either way about class 3
    assert logits.grad[0, 3].abs().max() > 0  # the real row still teaches it
    # the generated rows' term is cross-entropy over the other classes, targets renormalised over them
    # (each generated pixel weighted by how little of its target is the blind class)
    keep = [0, 1, 2]
    target = probs[:, keep] / probs[:, keep].sum(1, keepdim=True)
    syn = -(target * logits[1:, keep].log_softmax(1)).sum(1)
    real = torch.nn.functional.cross_entropy(logits[:1], labels, reduction="none")
    weight = torch.cat([torch.ones_like(real), 1 - probs[:, 3]])
    want = (torch.cat([real, syn]) * weight).sum() / weight.sum()
    torch.testing.assert_close(loss, want)
    # with Dice too: still no gradient on the blind class from generated rows, and no NaN anywhere
    logits.grad = None
    segmentation_loss(logits, labels, probs, dice_weight=1.0, blind=blind).backward()
    assert not logits.grad.isnan().any() and logits.grad[1:, 3].abs().max() == 0
    with pytest.raises(StylesegError, match="synthetic_blind"):
        SegmenterConfig(num_classes=k, synthetic_blind=(0,))  # background is never blind


def test_pixels_pasted_from_real_rows_teach_the_blind_classes_like_real_ones():
    torch.manual_seed(1)
    k, blind = 4, [3]
    logits = torch.randn(2, k, 2, 5, requires_grad=True)
    labels = torch.randint(0, k, (1, 2, 5))
    probs = torch.rand(1, k, 2, 5).softmax(1)
    real_px = torch.zeros(1, 2, 5, dtype=torch.bool)
    real_px[0, :, :2] = True  # two columns of the generated row were pasted: a real coat (class 3)
    probs[0, :, real_px[0]] = torch.nn.functional.one_hot(torch.tensor(3), k).float()[:, None]
    loss = segmentation_loss(logits, labels, probs, dice_weight=0.0, blind=blind, syn_real=real_px)
    loss.backward()
    assert logits.grad[1, 3][~real_px[0]].abs().max() == 0  # generated pixels: nothing about class 3
    assert logits.grad[1, 3][real_px[0]].abs().min() > 0  # pasted pixels teach it, at full weight
    real = torch.nn.functional.cross_entropy(logits[:1], labels, reduction="none")[0]
    pasted = torch.nn.functional.cross_entropy(logits[1:], torch.full((1, 2, 5), 3), reduction="none")[0]
    keep = [0, 1, 2]
    target = probs[0, keep] / probs[0, keep].sum(0, keepdim=True)
    generated = -(target * logits[1, keep].log_softmax(0)).sum(0)
    syn = torch.where(real_px[0], pasted, generated)
    weight = torch.cat([torch.ones(2, 5), torch.where(real_px[0], 1.0, 1 - probs[0, 3])])
    want = (torch.cat([real, syn]) * weight).sum() / weight.sum()
    torch.testing.assert_close(loss, want)
    # nothing pasted: the same as the rule without syn_real
    none = torch.zeros_like(real_px)
    torch.testing.assert_close(
        segmentation_loss(logits, labels, probs, blind=blind, syn_real=none),
        segmentation_loss(logits, labels, probs, blind=blind),
    )


def test_undrawn_classes_are_those_no_generated_mask_shows(model):
    stream = PairStream(model, StreamOptions(), CPU, dtype="fp32")
    seen = torch.zeros(len(stream.class_map.classes), dtype=torch.bool)
    for start in range(0, 128, 64):
        ids = stream.class_ids(list(range(3_000_000_000 + start, 3_000_000_000 + start + 64)))
        seen |= torch.bincount(ids.flatten(), minlength=len(seen)) > 0
    undrawn = undrawn_classes(stream, pairs=128)
    assert undrawn == [c for c in range(1, len(seen)) if not seen[c]]
    assert undrawn  # the tiny run's generator draws two classes, so some are never drawn
    # a segmentation head pushed towards one undrawn class makes it drawn
    st = model.growth
    with torch.no_grad():
        model.G.heads[st.stage].seg[st.seg_level].bias[undrawn[0]] += 100.0
    assert undrawn[0] not in undrawn_classes(stream, pairs=128)


def test_class_targeted_sampling_reaches_its_rate(model):
    # The tiny run's generator draws only two classes; a random segmentation head draws each class
    # at its own rate, from always to almost never.
    torch.manual_seed(0)
    st = model.growth
    with torch.no_grad():
        for p in model.G.heads[st.stage].seg[st.seg_level].parameters():
            p.normal_(0, 1)
    names = list(model.class_map.classes)
    base = PairStream(model, StreamOptions(), CPU, dtype="fp32")
    seen = shows(base._synthesize(list(range(512)))[1].argmax(1), range(1, len(names))).float().mean(0)
    # a class the generator draws now and then, neither often nor never
    target = next(names[c + 1] for c in torch.argsort((seen - 0.15).abs()).tolist() if 0.05 < seen[c] < 0.4)
    stream = PairStream(model, StreamOptions(classes=[target], class_rate=0.6), CPU, dtype="fp32")
    assert stream.targeter.any_rate < 0.5 and 0 < stream.targeted_share < 1
    # the description keys the segmenter cache: the same stream built again must give the same key,
    # or an interrupted class-targeted run could never resume (it once held the fit's seconds)
    again = PairStream(model, StreamOptions(classes=[target], class_rate=0.6), CPU, dtype="fp32")
    assert again.describe() == stream.describe()
    measured = rate_check(stream, steps=40, n=8)
    assert abs(measured[target] - 0.6) < 0.08, measured
    plain = rate_check(PairStream(model, StreamOptions(), CPU, dtype="fp32"), steps=10, n=8)
    assert plain["any"] == 0  # no classes targeted: nothing is counted


def test_segmenter_trains_on_a_stream_alone_and_records_the_generator_time(model, prepared_tiny):
    ds = PreparedDataset(prepared_tiny)
    cfg = SegmenterConfig(num_classes=ds.class_map.num_classes, width=4, max_steps=6, batch=4, dtype="fp32")
    stream = PairStream(model, StreamOptions(), CPU, dtype="fp32")
    seen = []
    draw = stream.draw
    stream.draw = lambda step, n: seen.append((step, n)) or draw(step, n)
    _, budget = train_segmenter([], cfg, CPU, None, log=lambda *_: None, synthetic=stream)
    assert seen == [(step, 4) for step in range(1, 7)]
    assert budget["synthetic_pairs_seen"] == 24 and 0 < budget["generator_share_of_time"] < 1


def test_pairs_on_top_keep_a_full_real_batch_and_are_the_same_share_of_a_larger_one(model, prepared_tiny):
    ds = PreparedDataset(prepared_tiny)
    real = [(ds, np.flatnonzero(ds.labeled))]
    seen = []
    stream = PairStream(model, StreamOptions(), CPU, dtype="fp32")
    draw = stream.draw
    stream.draw = lambda step, n: seen.append(n) or draw(step, n)
    budgets = {}
    for on_top in (False, True):
        cfg = SegmenterConfig(
            num_classes=ds.class_map.num_classes,
            width=4,
            max_steps=2,
            batch=6,
            dtype="fp32",
            synthetic_share=0.5,
            synthetic_on_top=on_top,
        )
        _, budgets[on_top] = train_segmenter(real, cfg, CPU, None, log=lambda *_: None, synthetic=stream)
    # taken from the batch: 3 generated of 6; on top: 6 real + 0.5 / 0.5 x 6 = 6 generated
    assert seen == [3, 3, 6, 6]
    assert budgets[False]["images_seen"] == 12 and budgets[True]["images_seen"] == 24
    assert batch_split(replace(cfg, synthetic_share=0.25), True, True) == (6, 2)  # round(0.25 / 0.75 x 6)
    assert batch_split(replace(cfg, synthetic_share=0.25, synthetic_on_top=False), True, True) == (4, 2)
    assert batch_split(cfg, False, True) == (0, 6)  # no real labels: all generated
    assert cfg.synthetic_only().synthetic_share == 1 and not cfg.synthetic_only().synthetic_on_top
    with pytest.raises(StylesegError, match="share below 1"):
        replace(cfg, synthetic_share=1.0)


def test_class_mix_pastes_half_of_a_real_rows_classes_whole_over_its_share_of_generated_rows():
    k, h, w = 5, 6, 4
    labels = torch.zeros(2, h, w, dtype=torch.long)
    labels[0, :2], labels[0, 2:4, :2], labels[0, 4:] = 1, 2, 3  # three classes besides background
    # real row 1 shows background alone: nothing of it is ever pasted
    x = torch.cat([torch.full((1, 3, h, w), float(v)) for v in (10, 20, 0, 1, 2, 3, 4, 5)])
    probs = torch.rand(6, k, h, w).softmax(1)
    before = (x.clone(), probs.clone())
    mixed, mixed_probs, donors, pasted_px = paste_real_classes(x, labels, probs, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(x, before[0]) and torch.equal(probs, before[1])  # the inputs stay as they were
    assert torch.equal(mixed[:2], x[:2])  # real rows are never changed
    onehot = torch.nn.functional.one_hot(labels[0], k).permute(2, 0, 1).float()
    from_row0 = 0
    for i in range(6):
        changed = (mixed[2 + i] != x[2 + i]).any(0)
        assert torch.equal(pasted_px[i], changed)  # the pixels it reports as real are those it pasted
        if not changed.any():
            assert torch.equal(mixed_probs[i], probs[i]) and donors[i] is None  # row 1: nothing to paste
            continue
        assert donors[i] == 0
        from_row0 += 1
        assert (mixed[2 + i][:, changed] == 10).all()  # the image's pixels come from real row 0
        pasted = labels[0][changed].unique().tolist()
        assert len(pasted) == 2 and 0 not in pasted  # half of its 3 classes, rounded up; never background
        assert torch.equal(changed, torch.isin(labels[0], torch.tensor(pasted)))  # whole classes
        assert torch.equal(mixed_probs[i][:, changed], onehot[:, changed])  # their targets: the real label
        assert torch.equal(mixed_probs[i][:, ~changed], probs[i][:, ~changed])
    assert 0 < from_row0 < 6  # with share 1 every row drew a donor: some drew row 0, some row 1
    again = paste_real_classes(x, labels, probs, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], mixed) and torch.equal(again[1], mixed_probs) and again[2] == donors
    unmixed = paste_real_classes(x, labels, probs, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(unmixed[0], x) and torch.equal(unmixed[1], probs) and unmixed[2] == [None] * 6
    # the share: of 400 generated rows, each pasted on with probability 0.5 (row 0 alone as donor)
    many = paste_real_classes(
        torch.cat([torch.ones(1, 3, h, w), torch.zeros(400, 3, h, w)]),
        labels[:1],
        torch.rand(400, k, h, w),
        0.5,
        torch.Generator().manual_seed(1),
    )[0]
    share = float((many[1:] != 0).flatten(1).any(1).float().mean())
    assert 0.4 < share < 0.6, share


def test_class_mix_needs_real_rows_reaches_training_and_keys_streamed_segmenters_only(model, prepared_tiny):
    from styleseg.metrics.segmenter_train import fingerprint

    ds = PreparedDataset(prepared_tiny)
    real = [(ds, np.flatnonzero(ds.labeled))]
    cfg = SegmenterConfig(num_classes=ds.class_map.num_classes, width=4, max_steps=2, batch=6, dtype="fp32")
    with pytest.raises(StylesegError, match="needs real labels"):
        replace(cfg, synthetic_share=1.0, class_mix=0.5)
    with pytest.raises(StylesegError, match="class mix"):
        replace(cfg, class_mix=1.5)
    assert replace(cfg, class_mix=0.5).synthetic_only().class_mix == 0
    stream = PairStream(model, StreamOptions(), CPU, dtype="fp32")
    weights = {}
    for share in (0.0, 1.0):
        trained, _ = train_segmenter(
            real, replace(cfg, class_mix=share), CPU, None, log=lambda *_: None, synthetic=stream
        )
        weights[share] = torch.cat([p.detach().flatten() for p in trained.parameters()])
    assert not torch.equal(weights[0.0], weights[1.0])  # the pasted pairs reach the loss
    streamed = {"synthetic": {"seed": 0}}
    mixed = replace(cfg, class_mix=0.5)
    assert fingerprint(real, mixed) == fingerprint(real, cfg)  # without a stream it changes nothing
    assert fingerprint(real, mixed, streamed) != fingerprint(real, cfg, streamed)


def test_on_top_keys_the_cache_of_streamed_segmenters_only(prepared_tiny):
    from styleseg.metrics.segmenter_train import fingerprint
    from styleseg.options import EvalOptions

    ds = PreparedDataset(prepared_tiny)
    real = [(ds, np.flatnonzero(ds.labeled))]
    cfg = EvalOptions(stream_on_top=True).segmenter_config(ds.class_map.num_classes, 100)
    assert cfg.synthetic_on_top  # evaluate's option reaches the segmenters it trains
    off = replace(cfg, synthetic_on_top=False)
    # without a stream the option changes nothing, so a real-only segmenter keeps its cache key
    assert fingerprint(real, cfg) == fingerprint(real, off)
    streamed = {"synthetic": {"seed": 0}}
    assert fingerprint(real, cfg, streamed) != fingerprint(real, off, streamed)
    # so does --synthetic-blind: a streamed segmenter's key, never a real-only one's
    blind = replace(off, synthetic_blind=(1,))
    assert fingerprint(real, blind) == fingerprint(real, off)
    assert fingerprint(real, blind, streamed) != fingerprint(real, off, streamed)


@pytest.mark.slow
def test_resumed_streamed_run_ends_with_the_weights_of_an_uninterrupted_one(checkpoint, prepared_tiny, tmp_path):
    """SIGKILL after the first periodic checkpoint, run the same command again: same weights."""
    argv = [sys.executable, "-m", "styleseg", "segmenter", "train", "--data", str(prepared_tiny)]
    argv += ["--generator", str(checkpoint), "--labels", "8", "--width", "4", "--max-steps", "300"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def run(out, cache):
        return [*argv, "--out", str(out), "--cache", str(cache)]

    subprocess.run(run(tmp_path / "whole", tmp_path / "c1"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(run(tmp_path / "cut", tmp_path / "c2"), env=env, stdout=subprocess.PIPE)
    deadline = time.time() + 300
    while not list((tmp_path / "c2").glob("*.partial/state.pt")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut").exists()
    done = subprocess.run(run(tmp_path / "cut", tmp_path / "c2"), check=True, env=env, capture_output=True, text=True)
    assert "resumed segmenter training at step" in done.stdout
    whole, cut = (load_file(tmp_path / d / "segmenter.safetensors") for d in ("whole", "cut"))
    assert set(whole) == set(cut)
    for name in whole:
        assert torch.equal(whole[name], cut[name]), name
    assert not list((tmp_path / "c2").glob("*.partial"))  # removed once the segmenter is complete


def test_stream_options_refuse_nonsense():
    for bad in (
        {"psi_range": (1.0, 0.5)},
        {"psi_range": (float("nan"), 1)},
        {"class_rate": 0.5},
        {"style_mixing": 1.5},
    ):
        with pytest.raises(StylesegError):
            StreamOptions(**bad)
    assert np.isclose(StreamOptions(psi_range=[0.5, 1]).psi_range[0], 0.5)


def test_segmenter_train_records_the_blind_classes_auto_finds(checkpoint, prepared_tiny, tmp_path, capsys):
    import json

    from styleseg.cli.main import main

    argv = ["segmenter", "train", "--data", str(prepared_tiny), "--cache", str(tmp_path / "c"), "--device", "cpu"]
    argv += ["--max-steps", "2", "--width", "4"]
    assert main([*argv, "--out", str(tmp_path / "s"), "--generator", str(checkpoint), "--synthetic-blind", "auto"]) == 0
    blind = json.loads((tmp_path / "s" / "segmenter.json").read_text())["config"]["synthetic_blind"]
    stream = PairStream(load_generator(checkpoint, CPU), StreamOptions(), CPU)
    assert blind == undrawn_classes(stream) and blind  # the tiny generator draws two of its classes
    assert "say nothing about (--synthetic-blind auto)" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "r"), "--synthetic-blind", "auto"]) == 2  # no --generator
    assert "need --generator" in capsys.readouterr().err


class _OneClassStream(PairStream):
    """A stream that reads every pair as class 1: what a relabelling stream looks like."""

    def relabel(self, img, seg, ws, noise):
        logits = torch.full_like(seg, -20.0)
        logits[:, 1] = 20.0
        return logits

    def describe(self):
        return {**super().describe(), "relabelled": "class 1"}


def test_a_stream_subclass_relabels_the_pairs_and_segmenter_train_uses_it(checkpoint, prepared_tiny, tmp_path):
    import json

    from styleseg.cli.main import main

    own = PairStream(load_generator(checkpoint, CPU), StreamOptions(psi_range=(1, 1)), CPU, dtype="fp32")
    other = _OneClassStream(load_generator(checkpoint, CPU), StreamOptions(psi_range=(1, 1)), CPU, dtype="fp32")
    a, b = own.draw(0, 2), other.draw(0, 2)
    assert torch.equal(a.images, b.images) and a.seeds == b.seeds  # the same pairs ...
    assert (b.probs.argmax(1) == 1).all() and not (a.probs.argmax(1) == 1).all()  # ... read another way
    argv = ["segmenter", "train", "--data", str(prepared_tiny), "--cache", str(tmp_path / "c"), "--device", "cpu"]
    argv += ["--max-steps", "2", "--width", "4", "--generator", str(checkpoint), "--out", str(tmp_path / "s")]
    assert main(argv, overrides={"stream_type": _OneClassStream}) == 0
    record = json.loads((tmp_path / "s" / "segmenter.json").read_text())
    assert record["synthetic"]["relabelled"] == "class 1"
