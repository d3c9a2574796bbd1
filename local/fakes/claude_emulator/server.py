"""The emulator's HTTP server (`python -m local.fakes.claude_emulator` runs `main`): a threading
HTTP/1.1 server that hands every request to `Emulator.handle` and writes its reply, streams
chunked."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.fakes.child import announce_port, exit_with_parent
from local.fakes.claude_emulator.emulator import Emulator

_REASONS = {529: "Overloaded", 429: "Too Many Requests"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "claude-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        emulator: Emulator = self.server.emulator  # type: ignore[attr-defined]
        reply = emulator.handle(method, self.path, body, headers)
        self.send_response(reply.status, _REASONS.get(reply.status))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.stream is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        stream = reply.stream
        try:
            self.end_headers()
            buffered: list[bytes] = []
            for chunk in stream:
                buffered.append(chunk)
                # without per-token latency everything is ready at once: one write
                if emulator.config["token_latency_s"]:
                    self._write_chunk(b"".join(buffered))
                    buffered.clear()
            if buffered:
                self._write_chunk(b"".join(buffered))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
            if reply.on_close:
                reply.on_close()

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def serve(config: dict | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
    emulator = Emulator(config)
    exit_with_parent(os.getppid())
    server = _Server((host, port), _Handler)
    server.emulator = emulator  # type: ignore[attr-defined]
    announce_port(server.server_port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever(poll_interval=0.2)


def main(argv: list[str] | None = None) -> None:
    description = sys.modules[__package__].__doc__.split("\n")[0]  # the package's first line
    parser = argparse.ArgumentParser(prog="python -m local.fakes.claude_emulator",
                                     description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--config", default="{}", help="JSON object (see DEFAULT_CONFIG)")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config)
        Emulator(config)  # validate before printing the port
    except ValueError as err:
        print(f"invalid --config: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    serve(config, args.port)


if __name__ == "__main__":
    main()
