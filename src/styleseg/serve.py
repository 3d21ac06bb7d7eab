"""`styleseg serve`: a local web page to play with a trained model (the `app` extra).

Starlette (the toolkit FastAPI is built on) serves one plain HTML page and a small JSON API: no
front-end build, no assets fetched from anywhere, no telemetry, so no data leaves the machine (Gradio
would bring a large front end and analytics to switch off). Everything the page shows is computed
by the functions the command line uses: a seed's pair is `synthesize`'s (the downloaded files are
byte for byte what `styleseg generate` writes for that seed and truncation), mixing and walks are
`Generator.styles`, a photo is read through `project`.
"""

from __future__ import annotations

import base64
import io
import threading
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from styleseg.errors import StylesegError
from styleseg.generate import _write_sample, level_class_map
from styleseg.models.load import LoadedGenerator
from styleseg.options import ProjectOptions
from styleseg.sampling import seed_latents, synthesize, to_class_ids, to_uint8_images
from styleseg.viz import colorize, overlay

MAX_UPLOAD = 8 * 2**20
"""Largest photo upload, in bytes."""
MAX_SIDE = 4096
"""Largest photo side, in pixels."""


class BadRequest(StylesegError):
    """What the page shows the user in its message line (HTTP 400)."""


class Explorer:
    """The model and everything the page asks of it; one request at a time (torch is not reentrant
    on one module and the CPU has no room for two)."""

    def __init__(self, model: LoadedGenerator, device: torch.device, project_steps: int = 100):
        self.model, self.device = model, device
        self.classes = level_class_map(model)
        self.st = model.growth
        self.lock = threading.Lock()
        self.project_opts = ProjectOptions(steps=project_steps)
        self._targeter = None
        self._discriminator = None

    def info(self) -> dict:
        h, w = self.model.config.model.resolution
        return {
            "model": self.model.path.name,
            "resolution": [h, w],
            "classes": list(self.classes.classes),
            "palette": [list(c) for c in self.classes.palette],
            "layers": 2 * (self.st.stage + 1),
            "kimg": self.model.kimg,
        }

    # ----- samples -----
    def _styles(self, seed: int, psi: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z, noise = seed_latents(self.model.G, [seed], self.st.stage, self.device)
        return self.model.G.styles(z, psi), noise

    @torch.no_grad()
    def sample(self, seed: int, psi: float, seed2: int | None = None, t: float = 0.0, layer: int | None = None):
        """A seed's pair; with seed2, the walk toward it in W (t in [0, 1]) or, with `layer`, the styles
        from `layer` on taken from seed2 (style mixing). Returns (image uint8 HxWx3, class ids HxW)."""
        G = self.model.G
        if seed2 is None:
            out = synthesize(G, [seed], self.st.stage, self.st.alpha, self.st.seg_level, psi, self.device)
            return to_uint8_images(out.img)[0], to_class_ids(out.seg)[0]
        ws, noise = self._styles(seed, psi)
        ws2, _ = self._styles(seed2, psi)
        if layer is not None:
            ws = ws.clone()
            ws[:, layer:] = ws2[:, layer:]
        else:
            ws = torch.lerp(ws, ws2, t)
        img, seg = G.synthesis(ws, self.st.stage, self.st.alpha, self.st.seg_level, noise)
        return to_uint8_images(img)[0], to_class_ids(seg)[0]

    def targeted_seed(self, name: str, seed: int, psi: float) -> int:
        """A seed from `seed`'s block whose pair shows class `name` (targeting.py)."""
        from styleseg.targeting import ClassTargeter, class_ids_for

        if self._targeter is None or self._targeter[1] != psi:
            ids = list(range(1, self.classes.num_classes))
            names = list(self.classes.classes[1:])

            def class_ids(seeds):
                out = synthesize(self.model.G, seeds, self.st.stage, self.st.alpha, self.st.seg_level, psi, self.device)
                return out.seg.argmax(1)

            targeter = ClassTargeter(self.model.G, class_ids, lambda s: torch.full((len(s),), psi), ids, names)
            with torch.no_grad():
                targeter.fit(bank=512, drop_undrawn=True)
            self._targeter = (targeter, psi)
        targeter = self._targeter[0]
        if name not in targeter.names:
            raise BadRequest(f"the model does not draw '{name}' often enough to be asked for it")
        class_ids_for([name], self.classes.classes)
        with torch.no_grad():
            return targeter.draw([targeter.names.index(name)], [seed]).seeds[0]

    def drawn_classes(self) -> list[str]:
        """Classes "show me" can ask for: those the generator draws (known once the targeter is fit)."""
        return list(self._targeter[0].names) if self._targeter else list(self.classes.classes[1:])

    # ----- files -----
    def pair_zip(self, seed: int, psi: float, image: np.ndarray, mask: np.ndarray) -> bytes:
        """images/NNNNNN.png, masks/NNNNNN.png and classes.json, as `styleseg generate` writes them."""
        import tempfile

        from styleseg.data.classes import write_classes_json

        palette = [c for color in self.classes.palette for c in color]
        palette += [0] * (768 - len(palette))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "images").mkdir()
            (root / "masks").mkdir()
            _write_sample(root, f"{seed:06d}", image, mask, palette, None)
            write_classes_json(self.classes, root / "classes.json")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for path in sorted(root.rglob("*.*")):
                    zf.write(path, path.relative_to(root).as_posix())
        return buf.getvalue()

    # ----- photos -----
    def read_upload(self, data: bytes, content_type: str | None) -> np.ndarray:
        """Checks an upload before any work: size, type, decodability, dimensions."""
        if not data:
            raise BadRequest("the upload is empty")
        if len(data) > MAX_UPLOAD:
            raise BadRequest(f"the photo is {len(data) / 2**20:.1f} MiB; the limit is {MAX_UPLOAD // 2**20} MiB")
        if content_type and not content_type.startswith("image/"):
            raise BadRequest(f"'{content_type}' is not an image type (JPEG, PNG or WebP expected)")
        try:
            with Image.open(io.BytesIO(data)) as im:
                if max(im.size) > MAX_SIDE:
                    raise BadRequest(f"the photo is {im.size[0]}x{im.size[1]}; the limit is {MAX_SIDE} pixels a side")
                im.load()
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise BadRequest(f"the upload is not a readable image ({exc.__class__.__name__})") from None

    def project_photo(self, photo: np.ndarray):
        from styleseg.project import discriminator_of, fit_photo, project, to_tensor

        if self._discriminator is None:
            self._discriminator = (discriminator_of(self.model, self.device),)
        fitted = fit_photo(photo, tuple(self.model.config.model.resolution))
        proj = project(self.model, to_tensor(fitted[None], self.device), self.project_opts, self._discriminator[0])
        return fitted, to_uint8_images(proj.img)[0], to_class_ids(proj.seg)[0], float(proj.pixel_error[0])

    def render(self, image: np.ndarray, mask: np.ndarray) -> dict:
        return {
            "image": png_url(image),
            "mask": png_url(colorize(mask, self.classes.palette)),
            "overlay": png_url(overlay(image, mask, self.classes.palette)),
            "ids": mask.astype(int).tolist(),
        }


def png_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def build_app(explorer: Explorer):
    """The Starlette application: the page and its API."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = resources.files("styleseg.app").joinpath("index.html").read_text()

    def _int(request: Request, name: str, default=None, low=None, high=None):
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number, not '{raw}'") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
        return value

    def _float(request: Request, name: str, default: float, low: float, high: float) -> float:
        raw = request.query_params.get(name, "")
        try:
            value = float(raw) if raw != "" else default
        except ValueError:
            raise BadRequest(f"{name} must be a number, not '{raw}'") from None
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}, not {value}")
        return value

    def _state(request: Request) -> dict:
        layers = explorer.info()["layers"]
        state = {
            "seed": _int(request, "seed", 0, 0, 2**31 - 1),
            "psi": _float(request, "psi", 1.0, 0.0, 1.5),
            "seed2": _int(request, "seed2", None, 0, 2**31 - 1),
            "t": _float(request, "t", 0.0, 0.0, 1.0),
            "layer": _int(request, "layer", None, 1, layers - 1),
        }
        target = request.query_params.get("target")
        if target:
            state["seed"] = explorer.targeted_seed(target, state["seed"], state["psi"])
        return state

    def guarded(handler):
        async def endpoint(request: Request):
            try:
                return await handler(request)
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except StylesegError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    async def index(request: Request):
        return HTMLResponse(page)

    async def info(request: Request):
        return JSONResponse({**explorer.info(), "targetable": explorer.drawn_classes()})

    async def sample(request: Request):
        state = _state(request)
        with explorer.lock:
            image, mask = explorer.sample(state["seed"], state["psi"], state["seed2"], state["t"], state["layer"])
        return JSONResponse({**explorer.render(image, mask), "state": state})

    async def pair(request: Request):
        state = _state(request)
        with explorer.lock:
            image, mask = explorer.sample(state["seed"], state["psi"], state["seed2"], state["t"], state["layer"])
            data = explorer.pair_zip(state["seed"], state["psi"], image, mask)
        name = f"styleseg-{state['seed']:06d}.zip"
        return Response(
            data, media_type="application/zip", headers={"Content-Disposition": f"attachment; filename={name}"}
        )

    async def project(request: Request):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("photo")
        if upload is None or not hasattr(upload, "read"):
            raise BadRequest("no photo in the upload (a form field named 'photo')")
        data = await upload.read(MAX_UPLOAD + 1)
        photo = explorer.read_upload(data, upload.content_type)
        with explorer.lock:
            fitted, image, mask, error = explorer.project_photo(photo)
        rendered = explorer.render(image, mask)
        rendered["photo"] = png_url(fitted)
        rendered["overlay"] = png_url(overlay(fitted, mask, explorer.classes.palette))
        return JSONResponse({**rendered, "error_per_value": round(error, 2), "steps": explorer.project_opts.steps})

    routes = [
        Route("/", index),
        Route("/api/info", guarded(info)),
        Route("/api/sample", guarded(sample)),
        Route("/api/pair.zip", guarded(pair)),
        Route("/api/project", guarded(project), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def serve(explorer: Explorer, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(explorer), host=host, port=port, log_level="warning")
