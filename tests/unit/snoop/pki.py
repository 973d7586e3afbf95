"""A throw-away CA and a certificate it signed (openssl), for the TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_pki(directory: Path, name: str = "relay") -> dict[str, Path]:
    """``cakey``, ``ca``, ``key``, ``cert`` (signed by ``ca``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {n: directory / f"{n}.pem" for n in ("cakey", "ca", "key", "csr", "cert")}

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files["cakey"]),
         "-out", str(files["ca"]), "-days", "2", "-subj", f"/CN={name}-ca")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(files["key"]),
         "-out", str(files["csr"]), "-subj", f"/CN={name}")  # fmt: skip
    ossl("x509", "-req", "-in", str(files["csr"]), "-CA", str(files["ca"]), "-CAkey",
         str(files["cakey"]), "-CAcreateserial", "-out", str(files["cert"]),
         "-days", "2")  # fmt: skip
    return files
