"""Throwaway TLS material for tests: a CA and a server certificate made with trustme.

The files are written to a directory so that a real ``redis-server`` can load them
(``--tls-cert-file`` and friends), and :meth:`TLSFiles.client_context` gives an
:class:`ssl.SSLContext` that trusts the CA, for clients talking to that server.
"""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["TLSFiles", "make_tls_files", "redis_tls_support"]

#: Names the server certificate is valid for.
SERVER_IDENTITIES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TLSFiles:
    """Paths of a CA certificate and a server certificate/key signed by it.

    Attributes:
        directory: Directory holding the three files.
        ca_file: PEM file of the CA certificate (what clients must trust).
        cert_file: PEM file of the server certificate chain.
        key_file: PEM file of the server's private key.
    """

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """Build a client-side SSL context that trusts this CA.

        Returns:
            A fresh :class:`ssl.SSLContext` with hostname checking on, trusting only
            the CA, suitable for ``127.0.0.1`` or ``localhost``.
        """
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """Build a server-side SSL context presenting the server certificate.

        Returns:
            A fresh :class:`ssl.SSLContext` for a Python test server.
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def make_tls_files(directory: str | os.PathLike[str] | None = None) -> TLSFiles:
    """Create a CA and a server certificate for 127.0.0.1/localhost on disk.

    Args:
        directory: Where to write ``ca.pem``, ``server.pem`` and ``server.key``;
            a new temporary directory when None (the caller removes it).

    Returns:
        The paths of the written files.
    """
    path = Path(tempfile.mkdtemp(prefix="redisha-tls-")) if directory is None else Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*SERVER_IDENTITIES)
    files = TLSFiles(
        directory=path,
        ca_file=path / "ca.pem",
        cert_file=path / "server.pem",
        key_file=path / "server.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    with open(files.cert_file, "wb") as f:
        for blob in leaf.cert_chain_pems:
            f.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(files.key_file))
    os.chmod(files.key_file, 0o600)
    return files


@functools.cache
def redis_tls_support(executable: str | None = None) -> str | None:
    """Tell whether the installed ``redis-server`` was built with TLS.

    The probe starts ``redis-server`` with a TLS port but an incomplete TLS
    configuration: a TLS build refuses it with "Failed to configure TLS" and exits
    at once, a build without TLS says something else. Nothing listens meanwhile.

    Args:
        executable: Path of ``redis-server``; looked up on PATH when None.

    Returns:
        None when TLS is supported, else a human-readable reason it is not.
    """
    exe = executable or shutil.which("redis-server")
    if exe is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    with tempfile.TemporaryDirectory(prefix="redisha-tlsprobe-") as tmp:
        try:
            proc = subprocess.run(
                [
                    exe,
                    "--port",
                    "0",
                    "--tls-port",
                    "1",
                    "--tls-cert-file",
                    os.path.join(tmp, "missing.pem"),
                    "--tls-key-file",
                    os.path.join(tmp, "missing.key"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    tmp,
                    "--loglevel",
                    "warning",
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "redis-server TLS probe did not exit within 10 s"
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    if "configure TLS" in out or "tls-ca-cert" in out:
        return None
    return f"{exe} was built without TLS support (probe said: {out.strip()[-300:]!r})"
