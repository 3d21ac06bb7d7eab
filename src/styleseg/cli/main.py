"""Entry point: `styleseg <command> ...`."""

from __future__ import annotations

import argparse
import sys

from styleseg import __version__
from styleseg.errors import StylesegError


def build_parser() -> argparse.ArgumentParser:
    from styleseg.cli import (
        bench_cmd,
        compare_cmd,
        data_cmds,
        demo_cmd,
        eval_cmds,
        explore_cmds,
        generate_cmd,
        models_cmd,
        project_cmd,
        serve_cmd,
        train_cmd,
    )
    from styleseg.cli.common import OneLineParser

    parser = OneLineParser(
        prog="styleseg",
        description="A style-based GAN that learns fashion photos and their segmentation maps jointly.",
    )
    parser.add_argument("--version", action="version", version=f"styleseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        data_cmds,
        train_cmd,
        generate_cmd,
        explore_cmds,
        eval_cmds,
        compare_cmd,
        models_cmd,
        project_cmd,
        serve_cmd,
        bench_cmd,
        demo_cmd,
    ):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None, overrides: dict | None = None) -> int:
    """Run one command. `overrides`: parsed arguments that a script extending a command sets in code
    rather than on the command line (e.g. `stream_type` of `segmenter train`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in (overrides or {}).items():
        setattr(args, name, value)
    args.run_command = main  # for commands made of other commands (demo), without importing this module
    try:
        return int(args.func(args) or 0)
    except StylesegError as exc:
        print(f"styleseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system that refused (full disk, permissions): named, not a traceback
        where = exc.filename or "a file"
        print(f"styleseg {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"styleseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
