"""A TCP proxy on 127.0.0.1 that delays S3 CompleteMultipartUpload calls.

It forwards bytes unchanged between the S3 driver and a real S3 server, so SigV4
signatures stay valid. A request whose first line is ``POST …?uploadId=…``
(only CompleteMultipartUpload looks like that) is held ``delay`` seconds,
either before it reaches the server (``hold="request"``: a server still
assembling the object, like rclone writing a large blob to disk) or after the
server answered (``hold="response"``: an answer lost on the way back).
Only the first ``times`` such calls are held. With ``then_cut``, every other
request sent after the first held completion is cut (its connection shut): the
network failed right after the completion, so the driver cannot check its outcome.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

_COMPLETE_START = b"POST "


class DelayProxy:
    def __init__(
        self,
        upstream: str,
        *,
        delay: float,
        hold: Literal["request", "response"],
        times: int = 1_000_000,
        then_cut: bool = False,
    ) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self._upstream = (host, int(port))
        self._delay = delay
        self._hold = hold
        self._times = times
        self._then_cut = then_cut
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self.completions = 0  # CompleteMultipartUpload requests seen
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            self._sockets += [client, server]
            held = threading.Event()  # set: the next response is to be held back
            self._spawn(self._pump, client, server, held, True)
            self._spawn(self._pump, server, client, held, False)

    def _should_hold(self, chunk: bytes) -> bool:
        first_line = chunk.split(b"\r\n", 1)[0]
        if not (first_line.startswith(_COMPLETE_START) and b"uploadId=" in first_line):
            return False
        with self._lock:
            self.completions += 1
            if self.completions > self._times:
                return False
            if self._then_cut:
                self._cut.set()
            return True

    def _pump(
        self, source: socket.socket, sink: socket.socket, held: threading.Event, outbound: bool
    ) -> None:
        try:
            while chunk := source.recv(1 << 20):
                if outbound and self._should_hold(chunk):
                    if self._hold == "request":
                        time.sleep(self._delay)
                    else:
                        held.set()
                elif outbound and self._cut.is_set() and not held.is_set():
                    return  # only the held completion's own bytes still pass
                elif not outbound and held.is_set():
                    held.clear()
                    time.sleep(self._delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            _shut(source, sink)

    def heal(self) -> None:
        """Forward every request again (the network is back)."""
        self._cut.clear()

    def close(self) -> None:
        """Stop accepting, cut every connection, wait for the threads (held ones too)."""
        self._closed.set()
        _shut(self._listener, *self._sockets)  # shutdown() also wakes the blocked accept()
        for thread in self._threads:
            thread.join(timeout=self._delay + 5)


def _shut(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
