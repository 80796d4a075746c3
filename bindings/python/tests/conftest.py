"""Shared by the binding's tests: the local exchange, a config for it, and
where things are.

The tests run against the source tree (``python3 -m pytest
bindings/python/tests`` from the repository root, after ``cargo build``:
the package from ``bindings/python``, the library from
``BINANCE_UDS_LIBRARY``, default ``target/debug/libbinance_uds.so``), or
against an installed wheel (scripts/test.sh copies them out of the tree
and sets ``BINANCE_UDS_TEST_INSTALLED=1``: the package and its bundled
library are the installed ones). ``BINANCE_UDS_REPO`` names the repository
(for the header, Cargo.toml and the READMEs they compare with) and
``BINANCE_UDS_EXCHANGE`` the local-exchange binary (default
``target/debug/local-exchange``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

REPO = Path(os.environ.get("BINANCE_UDS_REPO") or Path(__file__).resolve().parents[3])
PACKAGE_DIR = REPO / "bindings" / "python"
INSTALLED = os.environ.get("BINANCE_UDS_TEST_INSTALLED") == "1"
if not INSTALLED:
    os.environ.setdefault("BINANCE_UDS_LIBRARY", str(REPO / "target" / "debug" / "libbinance_uds.so"))

import binance_uds  # noqa: E402  (after the library path is set)

# Recognisable, so the tests can check it is never shown.
API_KEY = "TESTKEYpython0123456789"
# API_KEY's HMAC secret, registered on every exchange the tests start.
SECRET_KEY = "TESTSECRETpython9876543210"


def crate_version() -> str:
    cargo = (REPO / "Cargo.toml").read_text()
    want = re.search(r'^version = "([^"]+)"', cargo, re.MULTILINE)
    assert want is not None
    return want.group(1)


class Exchange:
    """A running local-exchange (see docs/local-exchange.md)."""

    def __init__(self, tmp: Path) -> None:
        path = os.environ.get("BINANCE_UDS_EXCHANGE", str(REPO / "target" / "debug" / "local-exchange"))
        self.process = subprocess.Popen(
            [path, "--die-with-stdin", "--ca-out", str(tmp / "ca.pem"), "--account", f"{API_KEY}:{SECRET_KEY}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        # Read the ready lines on a thread: a line that never comes must
        # not hang the test.
        lines: "queue.Queue[str]" = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None

        def read_lines() -> None:
            for raw in stdout:
                lines.put(raw.decode().strip())

        self.reader = threading.Thread(target=read_lines, daemon=True)
        self.reader.start()
        ready: Dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "rest" not in ready:  # the last ready line
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"local-exchange did not print its ready lines (got {ready})") from None
            key, _, value = line.partition("=")
            ready[key] = value
        self.ws_api = ready["ws_api"]
        self.stream = ready["stream"]
        self.coinm_ws_api = ready["coinm_ws_api"]
        self.coinm_stream = ready["coinm_stream"]
        self.pm_stream = ready["pm_stream"]
        host, _, port = ready["control"].rpartition(":")
        self.control_addr: Tuple[str, int] = (host, int(port))
        self.ca_file = ready["ca_file"]
        self.ca_pem = Path(self.ca_file).read_text()
        self.rest = ready["rest"]

    def control_raw(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        """Sends one control command; returns the answer."""
        with socket.create_connection(self.control_addr, timeout=60) as s:
            s.sendall((json.dumps(cmd) + "\n").encode())
            answer: Dict[str, Any] = json.loads(s.makefile("rb").readline())
        return answer

    def control(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        """Sends one control command; fails the test on ``ok: false``."""
        answer = self.control_raw(cmd)
        assert answer["ok"] is True, f"control {cmd}: {answer}"
        return answer

    def stats(self) -> Dict[str, Any]:
        return self.control({"cmd": "stats"})

    def emit(self, kind: str, count: int = 1) -> Dict[str, Any]:
        return self.control({"cmd": "emit", "api_key": API_KEY, "type": kind, "count": count})

    def env(self) -> Dict[str, str]:
        """The environment the examples read."""
        return {
            "BINANCE_API_KEY": API_KEY,
            "BINANCE_WS_API_URL": self.ws_api,
            "BINANCE_STREAM_URL": self.stream,
            "BINANCE_CA_FILE": self.ca_file,
        }

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.kill()
        self.process.wait()
        self.reader.join(timeout=10)  # it ends at end of file
        if self.process.stdout:
            self.process.stdout.close()


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(tmp_path)
    try:
        yield ex
    finally:
        ex.stop()


def config(ex: Exchange, **settings: Any) -> binance_uds.Config:
    """A config for the exchange, with `settings` on top."""
    base: Dict[str, Any] = {
        "api_key": API_KEY,
        "endpoint": ex.ws_api,
        "stream_endpoint": ex.stream,
        "root_certificate_pem": ex.ca_pem,
        "timeouts_ms": (5000, 5000),
        "reconnect_backoff_ms": (50, 500),
    }
    base.update(settings)
    return binance_uds.Config(**base)


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_key_not_in(*texts: str) -> None:
    for text in texts:
        assert API_KEY not in text
        assert SECRET_KEY not in text


