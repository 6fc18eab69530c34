#!/usr/bin/env python3
"""A webhook receiver for tests: records every request and answers by path prefix.

Usage: http_receiver.py RECORD_FILE [--rule PREFIX=BEHAVIOUR ...]

Binds 127.0.0.1 on an ephemeral port and prints the port as the first line of stdout (nothing
else is printed there). Every request except the control endpoint is appended to RECORD_FILE as
one JSON line, written when the request arrives (before any waiting):

  {"method", "path", "headers": {lower-case name: value}, "body", "concurrent", "arrived"}

where "concurrent" counts requests of the same rule prefix being handled at that moment,
this one included, and "arrived" is its arrival number (1, 2, ...).

Behaviours, chosen by the longest matching rule prefix; built-in prefixes:
  /ok            200
  /bad           400
  /redirect      302 to http://169.254.169.254/latest/meta-data/
  /leak          500 with a body that must never reach a tenant ("SECRET-INTERNAL-ANSWER")
  /fail-N...     503 for the first N requests of that exact path, then 200
  /throttle-S... 429 with "Retry-After: S" for the first request of that exact path, then 200
  /slow          no answer until the connection is closed, POST /__control/release, or 60 s;
                 then 200
Other paths get 404. Rules from --rule or the control endpoint take precedence; BEHAVIOUR is
one of ok, bad, leak, redirect, slow, fail-N, throttle-S.

Control endpoint (not recorded):
  POST /__control/rule     body {"prefix": "/x", "behaviour": "ok"}
  POST /__control/release  lets every request waiting in a "slow" behaviour answer 200
"""

import json
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUILTIN = {"/ok": "ok", "/bad": "bad", "/leak": "leak", "/redirect": "redirect", "/slow": "slow"}

lock = threading.Condition()
rules = {}  # prefix -> behaviour, from the command line and the control endpoint
seen = {}  # exact path -> requests so far
active = {}  # rule prefix -> requests being handled
release_generation = 0
arrivals = 0
record = None


def behaviour_for(path):
    """Returns (prefix, behaviour) for a path, or (None, None)."""
    best = None
    for prefix in list(rules) + list(BUILTIN):
        if path.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    if best is not None:
        return best, rules.get(best, BUILTIN.get(best))
    m = re.match(r"/(fail-\d+|throttle-\d+)", path)
    if m:
        return "/" + m.group(1), m.group(1)
    return None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add 40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet: stdout carries only the port
        pass

    def answer(self, status, headers=(), body=b""):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def client_closed(self):
        readable, _, _ = select.select([self.connection], [], [], 0.05)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def control(self, body):
        global release_generation
        with lock:
            if self.path == "/__control/rule":
                spec = json.loads(body)
                rules[spec["prefix"]] = spec["behaviour"]
            elif self.path == "/__control/release":
                release_generation += 1
                lock.notify_all()
            else:
                return self.answer(404)
        self.answer(200, body=b"{}")

    def handle_any(self):
        global arrivals
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/__control/"):
            return self.control(body)
        prefix, behaviour = behaviour_for(self.path)
        with lock:
            count = seen[self.path] = seen.get(self.path, 0) + 1
            active[prefix] = active.get(prefix, 0) + 1
            arrivals += 1
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
                "concurrent": active[prefix],
                "arrived": arrivals,
            }
            record.write(json.dumps(entry) + "\n")
            record.flush()
            generation = release_generation
        try:
            reply = self.decide(behaviour, count, generation)
        finally:
            # Counted down before the answer leaves, so a request that the answer lets the
            # client start never sees this one as concurrent.
            with lock:
                active[prefix] -= 1
        if reply is not None:
            self.answer(*reply)

    def decide(self, behaviour, count, generation):
        """Returns (status, headers, body), or None when the client went away."""
        if behaviour == "ok":
            return 200, (), b"ok"
        if behaviour == "bad":
            return 400, (), b"bad request"
        if behaviour == "redirect":
            return 302, [("Location", "http://169.254.169.254/latest/meta-data/")], b"moved"
        if behaviour == "leak":
            return 500, (), b"SECRET-INTERNAL-ANSWER db_password=hunter2"
        if behaviour == "slow":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with lock:
                    if release_generation > generation:
                        break
                if self.client_closed():
                    self.close_connection = True
                    return None
            return 200, (), b"ok"
        m = re.fullmatch(r"fail-(\d+)", behaviour or "")
        if m:
            return (503, (), b"unavailable") if count <= int(m.group(1)) else (200, (), b"ok")
        m = re.fullmatch(r"throttle-(\d+)", behaviour or "")
        if m:
            if count == 1:
                return 429, [("Retry-After", m.group(1))], b"slow down"
            return 200, (), b"ok"
        return 404, (), b"no rule"

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that vanishes mid-request (a sender killed by a test) is expected here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    global record
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    record = open(args[0], "a", encoding="utf-8")
    i = 1
    while i < len(args):
        if args[i] == "--rule" and i + 1 < len(args):
            prefix, _, behaviour = args[i + 1].partition("=")
            rules[prefix] = behaviour
            i += 2
        else:
            sys.exit("unknown argument: " + args[i])
    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
