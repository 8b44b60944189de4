"""The C extension of the media hot path; everything else is in pyproject.toml.

pip builds it with the rest of the package. `make install` also builds it in
place, next to its source, with `scripts/build_extensions.py`, so the tree
runs with `PYTHONPATH=.` as well as installed.
"""

from setuptools import Extension, setup

EXTENSIONS = [
    Extension(
        "media._rtpcore",
        sources=["media/_rtpcore.c"],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    )
]

if __name__ == "__main__":
    setup(ext_modules=EXTENSIONS)
