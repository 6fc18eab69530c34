#!/usr/bin/env python3
"""Serves the files of a folder over HTTP for tests (a web page and its scripts).

Usage: static_server.py DIR

Binds 127.0.0.1 on an ephemeral port and prints the port as the first line of stdout (nothing
else is printed there). Requests are logged to stderr.
"""
import functools
import http.server
import sys


def main():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
