#!/usr/bin/env python3
"""A tiny local package index: a folder of wheels served over HTTP on 127.0.0.1.

Test hosts cannot reach download.pytorch.org (or Anaconda), so steps that install PyTorch
are tested against wheels already on this machine (/opt/wheels), served as a pip
"find-links" page (the folder listing):

    pip install --no-index --find-links http://127.0.0.1:PORT/ torch

Container hosts share this machine's network, so they reach 127.0.0.1:PORT directly.

    python3 tests/hosts/pkgindex.py serve DIR [--port N]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path

WHEELS = Path("/opt/wheels")


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet unless it fails
        pass

    def log_error(self, format: str, *args: object) -> None:
        sys.stderr.write(f"[pkgindex] {format % args}\n")


def serve(root: Path, port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ROOT on 127.0.0.1:PORT (0: a free one) in a daemon thread; returns (server, url).

    Stop it with server.shutdown(); server.server_close().
    """
    handler = functools.partial(_Handler, directory=str(Path(root).resolve()))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pkgindex", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def make_wheelhouse(dest: Path, source: Path = WHEELS) -> Path:
    """Symlink source/*.whl into dest (created if needed); returns dest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(Path(source).glob("*.whl")):
        link = dest / wheel.name
        if not link.exists():
            link.symlink_to(wheel.resolve())
    return dest


SERVE_HELP = "serve DIR until interrupted; prints the URL"


def serve_command(description: str, prepare=Path, help_text: str = SERVE_HELP) -> int:
    """The `serve DIR [--port N]` command of this file and of the signed fixtures (aptrepo,
    toolkitrepo): `prepare(DIR)` (their build) gives the folder served until interrupted."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help=help_text)
    p.add_argument("dir", type=Path)
    p.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server, url = serve(prepare(args.dir), args.port)
    print(url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


def main() -> int:
    return serve_command(__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
