#!/usr/bin/env python3
"""An SMTP sink for tests (aiosmtpd): accepts mail on loopback and records it.

Usage: smtp_sink.py RECORD_FILE [--reject REGEX] [--defer REGEX] [--auth USER:PASSWORD]

Listens on 127.0.0.1, an ephemeral port chosen by the kernel, and prints the port as the first
line of stdout (nothing else is printed there). aiosmtpd's Controller needs a fixed port and
would have to guess a free one (bind, close, hope nobody takes it); serving aiosmtpd's SMTP
protocol from our own asyncio server on port 0 avoids that race.

Each accepted message is appended to RECORD_FILE as one JSON line:
  {"mail_from", "rcpt_tos", "data"  (the message as received, CRLF line endings, un-dot-stuffed),
   "headers" {lower-case name: value decoded per RFC 2047}, "text" (the body, transfer-decoded)}
Headers and text come from Python's email parser, so they also check that the message parses.

  --reject REGEX   RCPT TO addresses matching REGEX get "550 5.1.1 mailbox unavailable"
  --defer REGEX    RCPT TO addresses matching REGEX get "451 4.3.0 try again later"
  --auth U:P       require AUTH PLAIN/LOGIN with these credentials (allowed without TLS)
"""

import asyncio
import email
import email.policy
import json
import logging
import re
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, record, reject, defer):
        self.record = record
        self.reject = reject
        self.defer = defer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and re.search(self.reject, address):
            return "550 5.1.1 mailbox unavailable"
        if self.defer and re.search(self.defer, address):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        entry = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": raw.decode("utf-8", "replace"),
            "headers": {k.lower(): str(v) for k, v in message.items()},
            "text": body.get_content() if body is not None else None,
            "user": session.auth_data if session.authenticated else None,
        }
        self.record.write(json.dumps(entry) + "\n")
        self.record.flush()
        return "250 Message accepted for delivery"


def make_authenticator(credentials):
    user, _, password = credentials.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode()
        ok = login == user and auth_data.password.decode() == password
        return AuthResult(success=ok, auth_data=login if ok else None)

    return authenticate


async def serve(record, reject, defer, auth):
    handler = Sink(record, reject, defer)
    options = {"hostname": "localhost", "enable_SMTPUTF8": False}
    if auth:
        options.update(authenticator=make_authenticator(auth), auth_required=True,
                       auth_require_tls=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, loop=loop, **options), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main():
    # Plain-text AUTH is what --auth is for; keep aiosmtpd's warnings about it off the test log.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    record = open(args[0], "a", encoding="utf-8")
    flags = {"--reject": None, "--defer": None, "--auth": None}
    i = 1
    while i < len(args):
        if args[i] in flags and i + 1 < len(args):
            flags[args[i]] = args[i + 1]
            i += 2
        else:
            sys.exit("unknown argument: " + args[i])
    asyncio.run(serve(record, flags["--reject"], flags["--defer"], flags["--auth"]))


if __name__ == "__main__":
    main()
