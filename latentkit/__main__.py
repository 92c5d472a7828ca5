"""``python -m latentkit``: the command line, also as ``torchrun ... -m latentkit project ...``."""

from latentkit.cli import main

if __name__ == "__main__":
    main(prog_name="latentkit")
