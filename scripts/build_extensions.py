"""Build the C extensions of setup.py in place, next to their sources.

This runs setuptools' `build_ext` without reading pyproject.toml, so it
works with the setuptools that a new virtualenv ships (65 on Python 3.11),
which rejects the project's SPDX license field. Run from the repository root:
    .venv/bin/python scripts/build_extensions.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Distribution

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    from setup import EXTENSIONS

    distribution = Distribution({"name": "voxgate", "ext_modules": EXTENSIONS})
    command = distribution.get_command_obj("build_ext")
    command.inplace = True
    command.ensure_finalized()
    command.run()


if __name__ == "__main__":
    main()
