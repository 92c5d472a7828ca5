"""Sockets to the loopback interface only, for tests that talk to a local server or chromedriver (the
suite's autouse fixture blocks every connection; nothing here reaches another machine)."""

from __future__ import annotations

import _socket
import socket
import time

import pytest

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.fixture
def loopback_only(monkeypatch):
    """Allow connections to 127.0.0.1 / localhost / ::1; anything else still raises."""
    def connect(self, address):
        if not (isinstance(address, tuple) and address[0] in LOOPBACK) and not isinstance(address, str):  # str: a unix socket
            raise OSError(f"tests may connect only to the loopback interface, not {address!r}")
        return _socket.socket.connect(self, address)

    def create_connection(address, timeout=None, source_address=None, **kwargs):
        host, port = address
        if host not in LOOPBACK:
            raise OSError(f"tests may connect only to the loopback interface, not {address!r}")
        sock = socket.socket(socket.AF_INET6 if host == "::1" else socket.AF_INET, socket.SOCK_STREAM)
        if timeout is not None:
            sock.settimeout(timeout)
        connect(sock, ("127.0.0.1" if host == "localhost" else host, port))
        return sock

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 120.0, proc=None) -> bytes:
    """GET ``url`` until it answers (the server is starting); returns the body."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise
            time.sleep(0.3)


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) of sockets listening on ``port`` (Linux)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, state = fields[1], fields[3]
            if state == "0A" and int(address.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                out.append(address.rsplit(":", 1)[0])
    return out
