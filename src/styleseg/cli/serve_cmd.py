"""`styleseg serve`: a local web page to explore a model (needs the `app` extra)."""

from __future__ import annotations

import importlib.util

from styleseg.cli.common import add_device_arg, add_model_args, positive_int
from styleseg.errors import StylesegError


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page: seeds, truncation, walks, style mixing, 'show me' a class, your photo",
        description="Serves a page on this machine only (127.0.0.1 unless --host says otherwise); nothing is "
        "fetched from or sent to anywhere else. Needs the app extra: pip install 'styleseg[app]'.",
    )
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--project-steps", type=positive_int, default=100, help="optimisation steps for an uploaded photo (default 100)"
    )
    add_device_arg(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    missing = [m for m in ("starlette", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise StylesegError(f"serve needs {', '.join(missing)}: pip install 'styleseg[app]'")
    from styleseg.cli.common import load_model_arg
    from styleseg.device import resolve_device
    from styleseg.serve import Explorer, serve

    device = resolve_device(args.device)
    explorer = Explorer(load_model_arg(args, device), device, args.project_steps)
    print(f"styleseg explorer for {explorer.model.path.name}: http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    serve(explorer, args.host, args.port)
    return 0
