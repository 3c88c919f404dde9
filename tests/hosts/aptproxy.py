"""A STAND-IN for the lab's apt cache in the tests: a small forwarding HTTP proxy on 127.0.0.1
that counts every request it is sent (it caches nothing: the real cache is apt-cacher-ng, see
bench/labcache.py). apt asks a proxy for absolute URLs (`GET http://deb.debian.org/...`);
each is fetched from its source and relayed, so a container host's apt really works through
it. A request for a plain path (`GET /simple/NAME/`, what pip asks an index for) is counted
and answered 404: the stand-in of the lab's pip index. Python standard library only.

    server, url, seen = start()   # url: http://127.0.0.1:PORT ; seen: a list of (method, url)
    ...
    server.shutdown(); server.server_close()

`python3 tests/hosts/aptproxy.py [--port N]` runs it in the foreground.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.parse

PASS_HEADERS = ("Range", "If-Modified-Since", "If-Range", "If-None-Match", "Cache-Control")
BACK_HEADERS = (
    "Content-Type",
    "Last-Modified",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
    "Date",
)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # apt keeps the connection and pipelines its requests
    seen: list[tuple[str, str]]

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.seen.append((self.command, self.path))
        target = urllib.parse.urlsplit(self.path)
        if target.scheme != "http":
            return self.reply(404, b"stand-in index: no such project\n")
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=60)
        try:
            headers = {k: self.headers[k] for k in PASS_HEADERS if self.headers[k]}
            path = target.path + (f"?{target.query}" if target.query else "")
            conn.request(self.command, path or "/", headers=headers)
            upstream = conn.getresponse()
            body = upstream.read()
            extra = {k: upstream.getheader(k) for k in BACK_HEADERS if upstream.getheader(k)}
            self.reply(upstream.status, body, extra)
        except OSError as exc:
            self.reply(502, f"stand-in proxy: {exc}\n".encode())
        finally:
            conn.close()

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)


def start(port: int = 0):
    """Serve on 127.0.0.1 in a thread: (server, its URL, the list of requests it saw)."""
    seen: list[tuple[str, str]] = []
    handler = type("CountingHandler", (Handler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", seen


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3142)
    srv, address, _ = start(parser.parse_args().port)
    print(address, flush=True)
    threading.Event().wait()
