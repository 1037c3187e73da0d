"""Write a self-signed TLS certificate for HAProxy, unless one is already there.

    python deploy/selfsigned.py BUNDLE.pem [CA.pem] [--name localhost] [--ip 127.0.0.1]

BUNDLE.pem gets the certificate followed by its private key (HAProxy's `crt` format);
CA.pem, if given, the certificate alone (for clients to trust). For a test or a first
look only: on the internet, use a certificate from a certificate authority.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_self_signed(bundle: Path, ca: Path | None = None, names: tuple[str, ...] = ("localhost",),
                      ips: tuple[str, ...] = ("127.0.0.1",), days: int = 365) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else ips[0])])
    now = dt.datetime.now(dt.UTC)
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(cert_pem + key_pem)
    bundle.chmod(0o600)
    if ca is not None:
        ca.write_bytes(cert_pem)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("ca", type=Path, nargs="?")
    parser.add_argument("--name", action="append", default=[])
    parser.add_argument("--ip", action="append", default=[])
    args = parser.parse_args(argv)
    if args.bundle.exists():
        print(f"{args.bundle} exists; kept.")
        return 0
    write_self_signed(args.bundle, args.ca, tuple(args.name) or ("localhost",),
                      tuple(args.ip) or ("127.0.0.1",))
    print(f"wrote a self-signed certificate to {args.bundle}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
