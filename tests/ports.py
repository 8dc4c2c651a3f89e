"""A loopback port that refuses connections for as long as it is held.

A socket bound but never listening answers every connection attempt with a reset (connection
refused), and while it is held no other server can take the port; a port merely found free and
released could be taken by another test's server before the client tries it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
