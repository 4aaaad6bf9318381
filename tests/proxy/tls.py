"""A private CA and a server certificate for 127.0.0.1, made with the ``openssl`` command as an
operator would make them (docs/operations.md "Deployment"), for the proxy tests.

:func:`make_tls` writes ``ca.pem`` (the CA an agent's ``ca_file`` names), ``server.pem``
(the certificate followed by the CA, as a ``fullchain.pem``) and ``server.key`` into a folder,
and returns them with :attr:`Tls.spki`: the base64 SHA-256 of the server key's
SubjectPublicKeyInfo, which Chromium's ``--ignore-certificate-errors-spki-list`` takes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kit import timeout

OPENSSL = shutil.which("openssl")
SERVER_ADDRESS = "127.0.0.1"  # the certificate's subjectAltName, and where nginx listens


def require_openssl() -> str:
    if OPENSSL is not None:
        return OPENSSL
    message = "the openssl command is not installed (Debian: openssl)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Tls:
    ca: Path
    certificate: Path
    key: Path
    spki: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (as an agent with ``ca_file`` does)."""
        return ssl.create_default_context(cafile=str(self.ca))


def _openssl(folder: Path, *args: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([require_openssl(), *args], cwd=folder, input=stdin, capture_output=True,
                          timeout=timeout(30))
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}"
    return done.stdout


def make_tls(folder: Path) -> Tls:
    folder.mkdir(parents=True, exist_ok=True)
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(folder, "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=Jaga test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl(folder, "req", "-new", *key, "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={SERVER_ADDRESS}")
    (folder / "server.ext").write_text(f"subjectAltName=IP:{SERVER_ADDRESS}\nextendedKeyUsage=serverAuth\n"
                                       "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    _openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", "server.ext", "-out", "leaf.pem")
    chain = folder / "server.pem"
    chain.write_bytes((folder / "leaf.pem").read_bytes() + (folder / "ca.pem").read_bytes())
    public_key = _openssl(folder, "x509", "-in", "leaf.pem", "-noout", "-pubkey")
    spki_der = _openssl(folder, "pkey", "-pubin", "-outform", "DER", stdin=public_key)
    spki = base64.b64encode(hashlib.sha256(spki_der).digest()).decode()
    return Tls(folder / "ca.pem", chain, folder / "server.key", spki)
