"""The demo's tiny apps. `backend` answers who it is; `frontend` calls `backend` through its
sidecar's outbound listener and returns both answers. Run: python -m interlock.demo.apps ..."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def make_handler(
    name: str, instance: str, version: str, outbound: int | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out without a 40 ms stall

        def do_GET(self) -> None:
            body: dict[str, Any] = {"service": name, "instance": instance, "version": version}
            status = 200
            if outbound is not None:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{outbound}{self.path}", headers={"Host": "backend"}
                )
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        body["backend"] = json.loads(resp.read())
                except urllib.error.HTTPError as exc:
                    status = 502
                    body["backend_error"] = f"{exc.code} {exc.reason}"
                except (OSError, ValueError) as exc:
                    status = 502
                    body["backend_error"] = str(exc)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="An Interlock demo app.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbound", type=int, help="the sidecar's outbound port (frontend)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port),
        make_handler(args.name, args.instance, args.version, args.outbound),
    )
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
