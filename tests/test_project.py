"""`styleseg project`: the fitted latent redraws the photo better than the average latent does, its
mask is written as a palette PNG, and with --data the masks are scored against the labels."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from styleseg.cli.main import main
from styleseg.models.load import load_generator
from styleseg.options import ProjectOptions
from styleseg.project import discriminator_of, project, to_tensor
from styleseg.sampling import to_uint8_images
from tests.conftest import draw_person


@pytest.mark.parametrize("space", ["w", "w+"])
def test_fitting_brings_the_reconstruction_closer_to_the_photo(checkpoint, space):
    model = load_generator(checkpoint, torch.device("cpu"))
    # a photo the generator can draw: one of its own samples, from a latent projection does not start at
    st = model.growth
    z = torch.randn(2, model.G.cfg.z_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        target = model.G(z, st.stage, st.alpha, st.seg_level).img.clamp(-1, 1)
    photos = to_tensor(to_uint8_images(target), "cpu")
    D = discriminator_of(model, torch.device("cpu"))
    assert D is not None  # a checkpoint carries its discriminator
    start = project(model, photos, ProjectOptions(steps=1, space=space, lr=1e-6), D)
    fitted = project(model, photos, ProjectOptions(steps=60, space=space), D)
    assert fitted.ws.shape == (2, model.G.num_ws, model.G.cfg.w_dim)
    assert (fitted.pixel_error < 0.8 * start.pixel_error).all(), (start.pixel_error, fitted.pixel_error)
    if space == "w":  # one w for every layer
        assert torch.equal(fitted.ws[:, 0], fitted.ws[:, -1])


def test_project_writes_reconstruction_mask_and_overlay_and_scores_a_split(checkpoint, prepared_tiny, tmp_path):
    photo = tmp_path / "me.jpg"
    Image.fromarray(draw_person(36, 24, np.random.default_rng(2))[0]).save(photo)
    out = tmp_path / "p"
    assert main(["project", "--ckpt", str(checkpoint), str(photo), "--out", str(out), "--steps", "5"]) == 0
    mask = Image.open(out / "masks" / "me.png")
    assert mask.mode == "P" and mask.size == (16, 24)  # the model's shape, W x H
    assert Image.open(out / "reconstructions" / "me.png").size == (16, 24)
    assert (out / "overlays" / "me.png").exists()
    record = json.loads((out / "projection.jsonl").read_text())
    assert record["name"] == "me" and record["steps"] == 5 and record["seconds"] > 0
    # the sheet: photo | redrawn | its mask, enlarged 8x (192 // 24), 2-pixel gaps
    assert Image.open(out / "sheet.png").size[0] == 3 * (16 * 8 + 2) + 2

    scored = tmp_path / "s"
    argv = ["project", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--split", "train", "--n", "4"]
    assert main([*argv, "--out", str(scored), "--steps", "3"]) == 0
    summary = json.loads((scored / "summary.json").read_text())
    from styleseg.data.store import PreparedDataset
    from styleseg.metrics.segmentation import confusion_matrix, mean_iou

    ds = PreparedDataset(prepared_tiny)
    names = sorted(p.stem for p in (scored / "masks").iterdir())
    ids = ds.ids
    truth = np.stack([np.asarray(ds.masks[ids.index(n)]) for n in names])
    pred = np.stack([np.asarray(Image.open(scored / "masks" / f"{n}.png")) for n in names])
    assert summary["photos"] == 4
    assert Image.open(scored / "sheet.png").size[0] == 4 * (16 * 8 + 2) + 2  # with the labelled mask
    assert summary["projected_miou"] == pytest.approx(mean_iou(confusion_matrix(truth, pred, 12)))


def test_project_refuses_a_broken_photo_before_any_work(checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["project", "--ckpt", str(checkpoint), str(bad), "--out", str(tmp_path / "p")]) == 2
    assert "broken.jpg: corrupt or unreadable image" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
