"""Throwaway TLS material for tests: a CA and a server certificate made with trustme.

The files are written to a directory so that a real ``redis-server`` can load them
(``--tls-cert-file`` and friends); :class:`~trio_redisha.testing.TLSFiles` holds their
paths, and its ``client_context()`` gives an :class:`ssl.SSLContext` that trusts the
CA. trustme is a dev dependency, which is why this stays out of ``trio_redisha.testing``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import trustme

from trio_redisha.testing import TLSFiles, redis_tls_support

__all__ = ["TLSFiles", "make_tls_files", "redis_tls_support"]

#: Names the server certificate is valid for.
SERVER_IDENTITIES = ("127.0.0.1", "localhost")


def make_tls_files(
    directory: str | os.PathLike[str] | None = None,
    identities: tuple[str, ...] = SERVER_IDENTITIES,
) -> TLSFiles:
    """Create a CA and a server certificate for 127.0.0.1/localhost on disk.

    Args:
        directory: Where to write ``ca.pem``, ``server.pem`` and ``server.key``;
            a new temporary directory when None (the caller removes it).
        identities: The names the server certificate is valid for.

    Returns:
        The paths of the written files.
    """
    path = Path(tempfile.mkdtemp(prefix="redisha-tls-")) if directory is None else Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*identities)
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
