"""A bounded HTTP client to run inside a test host (stdlib only, run by path:
``python tests/support/http_probe.py URL [--count N] [--interval S] [--max-seconds T]``).

It GETs ``URL`` at most ``--count`` times, one request per ``--interval`` seconds (as far as
answers allow), for at most ``--max-seconds``, and stops early on SIGTERM or SIGINT. Each
request prints one JSON line as soon as it is answered:
``{"t": seconds since start, "status": code or null, "error": text or null, "body": the parsed
JSON body or null}``; a failed request is one with an error or a status other than 200.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any


def probe(url: str, timeout: float) -> dict[str, Any]:
    """One GET: its status, error and JSON body (None when not JSON)."""
    result: dict[str, Any] = {"status": None, "error": None, "body": None}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            result["status"] = resp.status
            data = resp.read()
    except urllib.error.HTTPError as exc:
        result["status"] = exc.code
        data = exc.read()
    except (OSError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    try:
        result["body"] = json.loads(data)
    except ValueError:
        result["body"] = None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=3.0, help="per request")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    start = time.monotonic()
    for sent in range(args.count):
        if stop.is_set() or time.monotonic() - start > args.max_seconds:
            break
        t = time.monotonic() - start
        line = {"t": round(t, 3), **probe(args.url, args.timeout)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        stop.wait(max(0.0, (sent + 1) * args.interval - (time.monotonic() - start)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
