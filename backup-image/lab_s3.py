"""The lab's S3-protocol server: Debian's moto, over TLS as real stores are (never used in production).

pgBackRest speaks S3 over TLS only, and barman-cloud should meet in the lab what it meets in production,
so the server answers HTTPS only, with a certificate from the lab cluster's CA: `pgdock-gen lab` copies
server.crt and server.key into the FOLDER of `lab_s3.py FOLDER PORT`. A restored lab joins this server
on a network of its own, at a new address: the lab then copies in a certificate naming every address
and sends SIGHUP, and the server loads it for the next connections (moto keeps its buckets in memory:
a restart would lose them).

Two things werkzeug's development server does not do by default and TLS clients need: keeping the
connection open between requests (HTTP/1.1; closing after each answer cost pgBackRest a retry each),
and ending the connection with TLS's close_notify (OpenSSL clients report a bare close as an
"unexpected eof").
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server


class KeepAlive(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"


def main(folder: str, port: int) -> None:
    certificate, key = f"{folder}/server.crt", f"{folder}/server.key"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    signal.signal(signal.SIGHUP, lambda *_: context.load_cert_chain(certificate, key))
    server = make_server("0.0.0.0", port, DomainDispatcherApplication(create_backend_app), threaded=True,  # noqa: S104
                         request_handler=KeepAlive, ssl_context=context)
    plain_shutdown = server.shutdown_request

    def shutdown_request(request: socket.socket) -> None:
        if isinstance(request, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):  # the client went first: nothing to tell it
                request.unwrap()  # sends close_notify
        plain_shutdown(request)

    server.shutdown_request = shutdown_request  # type: ignore[method-assign]
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
