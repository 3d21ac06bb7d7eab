"""Allows `python -m styleseg ...` and `torchrun -m styleseg ...`."""

from styleseg.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
