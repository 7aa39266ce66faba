"""An HTTP proxy on 127.0.0.1 in front of a real S3 server that can refuse writes as a full
MinIO does.

Requests and answers pass unchanged (SigV4 signatures stay valid) while ``refusing`` is
"nothing". With "writes", every write (a PUT: objects, parts, copies; or the POST
completing a multipart upload) is answered like MinIO past its free-space threshold,
HTTP 507 with code ``XMinioStorageFull``, while reads, lists and deletes still reach the
server. With "commits", only what makes an upload an object (a copy, a completion) is:
a store that filled up between an upload's last write and its commit. With "after a
commit", everything passes until a commit succeeds, then it refuses "writes": a store that
filled up right after a commit.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

MINIO_FULL = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>XMinioStorageFull</Code>'
    b"<Message>Storage backend has reached its minimum free drive threshold. "
    b"Please delete a few objects to proceed.</Message></Error>"
)
# Set by the proxy itself, or meaningless once relayed.
_HOP_HEADERS = frozenset({"connection", "transfer-encoding", "content-length", "date", "server"})


class FullProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.refusing: Literal["nothing", "writes", "commits", "after a commit"] = "nothing"
        self.refused = 0  # writes answered 507
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def relay(self) -> None:
                assert "chunked" not in self.headers.get("Transfer-Encoding", "")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                complete = self.command == "POST" and "uploadId=" in self.path
                commit = complete or "x-amz-copy-source" in self.headers
                if (proxy.refusing == "writes" and (self.command == "PUT" or complete)) or (
                    proxy.refusing == "commits" and commit
                ):
                    proxy.refused += 1
                    self.answer(507, [("Content-Type", "application/xml")], MINIO_FULL)
                    return
                # Expect is not signed; this handler already answered 100 Continue.
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                upstream_conn = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    response = upstream_conn.getresponse()
                    data = response.read()
                    if commit and response.status < 300 and proxy.refusing == "after a commit":
                        proxy.refusing = "writes"
                    self.answer(response.status, response.getheaders(), data)
                finally:
                    upstream_conn.close()

            def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                declared = str(len(data))
                for name, value in headers:
                    if name.lower() == "content-length":
                        declared = value  # a HEAD answer's length, with no body
                    elif name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", declared)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
