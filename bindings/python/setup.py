"""Builds the package with the Rust library inside it.

setuptools-rust runs cargo on the repository's Cargo.toml (two levels up:
this directory is inside the workspace) and copies the cdylib into
``binance_uds/`` under its own name, where the ctypes loader looks first.
The version is the crate's, read from Cargo.toml: one source for both.

    pip install ./bindings/python      # or: pip wheel ./bindings/python
"""

import os
import re
import runpy

from setuptools import setup
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = os.path.dirname(os.path.abspath(__file__))
CARGO_TOML = os.path.join(HERE, "..", "..", "Cargo.toml")
LIBRARY_FILE = runpy.run_path(os.path.join(HERE, "binance_uds", "_library.py"))["file_name"]()


def crate_version() -> str:
    """The `version` of the `[package]` table of the root Cargo.toml."""
    if not os.path.exists(CARGO_TOML):
        raise RuntimeError(
            f"{CARGO_TOML} not found: the package builds the Rust library of the repository it sits in, "
            "so build it in place (`pip install ./bindings/python` or `pip wheel ./bindings/python` with "
            "pip >= 21.3), not from a copy or an sdist"
        )
    with open(CARGO_TOML, encoding="utf-8") as f:
        text = f.read()
    package = re.search(r"^\[package\]$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    version = package and re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.MULTILINE)
    if not version:
        raise RuntimeError(f"no [package] version in {CARGO_TOML}")
    return version.group(1)


class BuildRust(build_rust):
    """Names the copied library as cargo does (``libbinance_uds.so``), not as
    a Python extension module (``...cpython-311-x86_64-linux-gnu.so``): it
    is not one, and the same file serves every Python version."""

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), LIBRARY_FILE)


class BdistWheel(bdist_wheel):
    """Tags the wheel py3-none-<platform>: it holds native code for one
    platform but uses no Python C API, so any Python 3 can load it."""

    def get_tag(self):  # type: ignore[no-untyped-def]
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    version=crate_version(),
    rust_extensions=[
        RustExtension(
            "binance_uds.libbinance_uds",
            path=CARGO_TOML,
            binding=Binding.NoBinding,
            # The library crate alone, in release mode, with its own
            # Cargo.lock (the workspace's).
            args=["--package", "binance-uds", "--locked"],
            py_limited_api=False,
        )
    ],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": BdistWheel},
    zip_safe=False,
)
