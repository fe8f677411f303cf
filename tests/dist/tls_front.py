#!/usr/bin/env python3
"""A TLS front for the AWS emulator (tests only): HTTPS in, the emulator's plain HTTP out.

  tls_front.py --upstream http://127.0.0.1:5000 --dir DIR
      (prints "listening on https://127.0.0.1:PORT")

Makes a certificate authority and a server certificate for 127.0.0.1 with openssl
(DIR/ca.pem is what a client trusts, e.g. through SSL_CERT_FILE), listens on a free loopback
port, and forwards the bytes of each TLS connection to the upstream. Each completed
handshake appends a line to DIR/handshakes: the TLS version and the cipher negotiated. A
handshake the client refused (it does not trust the CA) appends a line to DIR/refused.
"""

import argparse
import os
import socket
import ssl
import subprocess
import threading
import urllib.parse


def make_certs(d):
    """A CA and a leaf for IP 127.0.0.1 signed by it (rustls refuses a CA as a server's cert)."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)

    p = lambda name: os.path.join(d, name)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", p("ca-key.pem"), "-out", p("ca.pem"), "-days", "2",
            "-subj", "/CN=drainhook test CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", p("key.pem"), "-out", p("leaf.csr"), "-subj", "/CN=127.0.0.1")
    with open(p("leaf.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", p("leaf.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca-key.pem"),
            "-CAcreateserial", "-days", "2", "-extfile", p("leaf.ext"), "-out", p("cert.pem"))


def note(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, ctx, upstream, d):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        note(os.path.join(d, "refused"), str(e))
        conn.close()
        return
    note(os.path.join(d, "handshakes"), "%s %s" % (tls.version(), tls.cipher()[0]))
    up = socket.create_connection(upstream)
    t = threading.Thread(target=pump, args=(up, tls), daemon=True)
    t.start()
    pump(tls, up)
    t.join()
    tls.close()
    up.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.upstream)
    upstream = (u.hostname, u.port or 80)
    make_certs(a.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "cert.pem"), os.path.join(a.dir, "key.pem"))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print("listening on https://127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, ctx, upstream, a.dir), daemon=True).start()


if __name__ == "__main__":
    main()
