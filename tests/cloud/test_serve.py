"""``lanesync cloud serve`` (cloud/serve.py): the uplink port over TLS with ``--tls-cert`` and
``--tls-key`` (a throwaway self-signed certificate for 127.0.0.1, made here), and the clean
``cloud.stopped`` line on SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import wait_until
from websockets.sync.client import connect

from lanesync.cloud.serve import tls_context
from lanesync.errors import ConfigError

from .conftest import STORE_ID, World
from .procs import ENV, LOOPBACK, Procs, cli
from .store import one_error_line

UPLOAD_TIMEOUT_S = 30.0


def self_signed(directory: Path, name: str = "cloud") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, valid for a day: (cert, key) PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lanesync test cloud")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_a_lane_uploads_over_tls_and_sigterm_logs_stopped(world: World, procs: Procs) -> None:
    cert_file, key_file = self_signed(world.root)
    cloud = procs.cloud(world.cloud, world.db, ["--tls-cert", cert_file, "--tls-key", key_file])
    assert cloud.listen.startswith(f"wss://{LOOPBACK}:"), cloud.listen

    # Without the certificate among its trusted ones, a client refuses the cloud.
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(cloud.listen, proxy=None, open_timeout=10).close()

    # A lane trusts it through OpenSSL's SSL_CERT_FILE (docs/how-to/cloud.md, section 3).
    lane = procs.ready(
        procs.spawn_lane(
            world.enroll("lane1"), cloud=cloud.listen, env={**ENV, "SSL_CERT_FILE": str(cert_file)}
        )
    )
    sale = lane.sell([("milk", 3, 149)])
    wait_until(lambda: cloud.sales(STORE_ID)["count"] == 1, UPLOAD_TIMEOUT_S, lane.log_text)
    assert [s["sale_id"] for s in cloud.sales(STORE_ID)["sales"]] == [sale["sale_id"]]
    assert lane.status()["cloud"]["connected"] is True

    assert procs.stop(cloud, signal.SIGTERM) == 0
    lines = [json.loads(line) for line in cloud.log_text().splitlines()]
    assert (lines[-1]["level"], lines[-1]["logger"], lines[-1]["msg"]) == (
        "info",
        "lanesync.cloud",
        "cloud.stopped",
    )


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_tls_options_refuse_bad_input_in_one_line(world: World) -> None:
    cert_file, key_file = self_signed(world.root)
    other_cert, _ = self_signed(world.root, "other")
    serve = ("cloud", "serve", world.cloud, "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0")
    alone = cli(*serve, "--tls-cert", cert_file, cwd=world.root)
    assert one_error_line(alone) == (
        "error: --tls-cert and --tls-key go together: give both, or neither"
    )
    mismatched = cli(*serve, "--tls-cert", other_cert, "--tls-key", key_file, cwd=world.root)
    assert one_error_line(mismatched) == (
        f"error: cannot use TLS certificate {other_cert} with key {key_file}: "
        "not a PEM certificate and its private key"
    )
    swapped = cli(*serve, "--tls-cert", key_file, "--tls-key", cert_file, cwd=world.root)
    assert "not a PEM certificate and its private key" in one_error_line(swapped)
    assert not (world.cloud / "runtime.json").exists()  # nothing was served


def test_a_tls_file_gone_since_the_command_line_was_checked_is_one_line(tmp_path: Path) -> None:
    # click checks that the files exist; one removed before serve reads it is said as plainly.
    cert_file, key_file = self_signed(tmp_path)
    key_file.unlink()
    with pytest.raises(ConfigError) as raised:
        tls_context(cert_file, key_file)
    assert str(raised.value) == (
        f"cannot use TLS certificate {cert_file} with key {key_file}: No such file or directory"
    )
