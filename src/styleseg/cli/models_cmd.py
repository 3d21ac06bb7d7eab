"""`styleseg models [list|export]`: shipped models and exporting a run as one file."""

from __future__ import annotations

import json
from pathlib import Path

from styleseg.cli.common import add_device_arg
from styleseg.paths import models_cache


def register(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list shipped models, or export a run as one model file",
        description="Without an action: list the registered models (shipped in the package, or hosted with a "
        "URL and SHA-256 and cached in " + str(models_cache()) + "). Any --ckpt option also takes --model NAME.",
    )
    p.set_defaults(func=cmd_list)
    s = p.add_subparsers(dest="models_command", metavar="ACTION")
    s.add_parser("list", help="list registered models").set_defaults(func=cmd_list)
    e = s.add_parser(
        "export",
        help="write a checkpoint's G_ema as one safetensors file (fp16) with its config and classes",
        description="The file loads with --model PATH wherever --ckpt is accepted, and can be added to a "
        "registry (a JSON file named by $STYLESEG_MODELS) with its URL and SHA-256.",
    )
    e.add_argument("--ckpt", required=True, help="run folder, checkpoint folder, or a file inside one")
    e.add_argument("--out", required=True, help="the .safetensors file to write")
    e.add_argument("--name", required=True, help="model name recorded in the file")
    e.add_argument("--fp32", action="store_true", help="keep fp32 weights (default fp16: half the size)")
    e.add_argument(
        "--with-discriminator",
        action="store_true",
        help="also store D (and ADA's p), so that `styleseg train --init FILE` can train on from it (about twice "
        "the size)",
    )
    e.add_argument("--card", default=None, help="a JSON file of model-card facts to embed (figures, data, terms)")
    add_device_arg(e)
    e.set_defaults(func=cmd_export)


def cmd_list(args) -> int:
    from styleseg.models.registry import exported_metadata, model_path, registry

    models = registry()
    if not models:
        print("no models registered")
        return 0
    for name, entry in sorted(models.items()):
        where = "packaged" if entry.file else f"hosted: {entry.url} (sha256 {entry.sha256[:12]}…)"
        line = f"{name:<20} {entry.description}  [{where}]"
        if entry.file:  # read from the file's header: no weights loaded
            path = model_path(name)
            meta = exported_metadata(path)
            h, w = json.loads(meta["config"])["model"]["resolution"]
            classes = json.loads(meta["classes"])
            k = len(classes["classes"]) if isinstance(classes, dict) else len(classes)
            name_of_map = classes.get("name", "custom") if isinstance(classes, dict) else "custom"
            line += f"\n{'':<20} {h}x{w}, {k} classes ({name_of_map}), "
            line += f"{float(meta['kimg']):.0f} kimg, {path.stat().st_size / 2**20:.1f} MiB"
        print(line)
    return 0


def cmd_export(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.models.load import load_generator
    from styleseg.models.zoo import export_generator
    from styleseg.training.checkpoint import discriminator_state

    model = load_generator(Path(args.ckpt), resolve_device(args.device))
    card = json.loads(Path(args.card).read_text()) if args.card else None
    d_state, ada_p = discriminator_state(model.path) if args.with_discriminator else (None, None)
    path = export_generator(
        model, Path(args.out), args.name, half=not args.fp32, card=card, discriminator=d_state, ada_p=ada_p
    )
    size = path.stat().st_size / 2**20
    print(f"exported {model.path} (kimg {model.kimg:.1f}) as '{args.name}': {path} ({size:.2f} MiB)")
    return 0
