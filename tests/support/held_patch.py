"""A PATCH sent over a raw socket and held open mid-body.

Lets a test act while a server is still reading an upload chunk (the request holds the
upload's lease): the test sends the headers and part of the body, does its checks, then
sends the rest or drops the connection.
"""

from __future__ import annotations

import socket

from support.server import RegistryServer


def open_patch(
    server: RegistryServer, path: str, offset: int, chunk: bytes, sent: int
) -> socket.socket:
    """Send a PATCH of ``chunk`` at ``offset`` to ``path``, with only its first ``sent``
    body bytes; the socket stays open for the rest."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {server.host_port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Range: {offset}-{offset + len(chunk) - 1}\r\n"
        f"Content-Length: {len(chunk)}\r\n\r\n"
    ).encode()
    sock.sendall(head + chunk[:sent])
    return sock


def read_response_head(sock: socket.socket) -> tuple[int, str]:
    """The status and header block of the response on ``sock`` (0 and "" if it closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            break
        data += more
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return (int(head.split(" ", 2)[1]) if head else 0), head
