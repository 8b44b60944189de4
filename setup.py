"""The C extensions of the media and SIP hot paths; everything else is in pyproject.toml.

pip builds them with the rest of the package. `make install` also builds them
in place, next to their sources, with `scripts/build_extensions.py`, so the
tree runs with `PYTHONPATH=.` as well as installed.
"""

from setuptools import Extension, setup

COMPILE_ARGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]

EXTENSIONS = [
    Extension("media._rtpcore", sources=["media/_rtpcore.c"], extra_compile_args=COMPILE_ARGS),
    Extension(
        "signaling.sip._sipcore",
        sources=["signaling/sip/_sipcore.c"],
        extra_compile_args=COMPILE_ARGS,
    ),
]

if __name__ == "__main__":
    setup(ext_modules=EXTENSIONS)
