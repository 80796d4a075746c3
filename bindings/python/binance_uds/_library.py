"""The shared library's file name on this platform: the one home of that
fact, read by the package's loader and by ``setup.py`` (which names the
copy it puts in the package with it). Imports nothing of the package."""

import sys


def file_name() -> str:
    """``libbinance_uds.so``, ``libbinance_uds.dylib`` or ``binance_uds.dll``:
    the name cargo gives the cdylib."""
    if sys.platform == "darwin":
        return "libbinance_uds.dylib"
    if sys.platform == "win32":
        return "binance_uds.dll"
    return "libbinance_uds.so"
