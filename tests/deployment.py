"""Helpers for tests that run Flower's Deployment Engine on localhost.

They start real ``flower-superlink`` and ``flower-supernode`` processes on free ports, make
TLS certificates (a CA and a server certificate for 127.0.0.1/localhost) and SuperNode
authentication keys with ``cryptography``, submit runs with ``flwr run``, and stop every
process they started by its pid, together with the helpers those processes spawned
(Flower's SuperExec and ClientApp processes), even when a test fails.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flower_env(home: Path) -> dict[str, str]:
    """Environment for Flower's commands: this venv first on PATH, an isolated FLWR_HOME.

    The SuperLink and SuperNodes start ``flower-superexec`` and ``flwr-clientapp`` by name,
    so the venv's ``bin`` must be on PATH. Runtime dependency installation is off: FedASO
    is installed already, and ``uv sync`` would fetch PyTorch again.
    """
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


# -- TLS and SuperNode keys ------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA, and the server certificate (127.0.0.1, localhost) with its key."""

    ca: Path
    server_cert: Path
    server_key: Path


def make_certificates(directory: Path) -> Certificates:
    """Create a CA and a server certificate it signs, valid for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedASO test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    certificates = Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    certificates.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certificates.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    certificates.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificates


def make_supernode_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """An EC P-384 key pair in OpenSSH format, as ``flwr supernode register`` expects."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / name, directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


# -- processes -------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Pids of every live process below ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop ``process`` and everything it spawned: SIGTERM, then SIGKILL those left, by pid."""
    spawned = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + timeout
    for pid in spawned:  # helpers watch their parent and exit; any that do not are killed
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Federation:
    """A SuperLink and its SuperNodes on localhost, and an FLWR_HOME with a connection."""

    directory: Path
    port: int
    env: dict[str, str]
    certificates: Certificates | None
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        """Start ``BIN/args[0] args[1:]`` with its output in ``<name>.log``."""
        log_path = self.directory / f"{name}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                cwd=self.directory,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        self.logs.append(log_path)
        return process

    def stop_all(self) -> None:
        """Stop every process this federation started, SuperNodes first."""
        for process in reversed(self.processes):
            stop(process)

    def tail_logs(self, chars: int = 3000) -> str:
        """The end of every log, for a failing test's message."""
        return "\n".join(f"== {p.name}\n{p.read_text()[-chars:]}" for p in self.logs)

    def flwr(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this federation from the repository root."""
        return subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def start_superlink(
    directory: Path, *, tls: bool = False, auth: bool = False, simulation: bool = False
) -> Federation:
    """Start a SuperLink and write its connection, ``site``, as FLWR_HOME's default.

    By default it runs the Deployment Engine (SuperNodes connect to it); with ``simulation``
    it runs submitted apps on Flower's simulation runtime instead.
    """
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / "flwr-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    certificates = make_certificates(directory / "certs") if tls else None
    security = f'root-certificates = "{certificates.ca}"\n' if certificates else "insecure = true\n"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "site"\n\n[superlink.site]\n'
        f'address = "127.0.0.1:{port}"\n{security}'
    )
    federation = Federation(directory, port, flower_env(home), certificates)
    args = ["flower-superlink", "--disable-runtime-dependency-installation"]
    args += ["--host", "127.0.0.1", "--port", str(port), "--database", str(directory / "link.db")]
    if certificates:
        args += ["--ssl-certfile", str(certificates.server_cert)]
        args += ["--ssl-keyfile", str(certificates.server_key)]
        args += ["--ssl-ca-certfile", str(certificates.ca)]
    else:
        args.append("--insecure")
    if auth:
        args.append("--enable-supernode-auth")
    if simulation:
        args.append("--simulation")
    process = federation.start("superlink", args)
    try:
        wait_healthy(federation, process)
    except Exception:
        federation.stop_all()
        raise
    return federation


def wait_healthy(federation: Federation, process: subprocess.Popen, timeout=90.0) -> None:
    """Wait until the SuperLink answers ``/health`` (over TLS when it has certificates)."""
    scheme = "https" if federation.certificates else "http"
    context = (
        ssl.create_default_context(cafile=str(federation.certificates.ca))
        if federation.certificates
        else None
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited:\n{federation.tail_logs()}")
        try:
            url = f"{scheme}://127.0.0.1:{federation.port}/health"
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"flower-superlink not healthy after {timeout}s:\n{federation.tail_logs()}")


def start_supernode(
    federation: Federation, partition: int, partitions: int, *, key: Path | None = None
) -> subprocess.Popen:
    """Start a SuperNode for ``partition`` of ``partitions`` connected to the SuperLink."""
    args = ["flower-supernode", "--superlink", f"127.0.0.1:{federation.port}"]
    args += ["--port", str(free_port())]  # its own ClientApp runtime API
    args += ["--node-config", f"partition-id={partition} num-partitions={partitions}"]
    if federation.certificates:
        args += ["--root-certificates", str(federation.certificates.ca)]
    else:
        args.append("--insecure")
    if key is not None:
        args += ["--auth-supernode-private-key", str(key)]
    return federation.start(f"supernode-{partition}", args)


def json_of(output: str) -> dict:
    """The JSON object in ``flwr ... --format json`` output (logs may precede it)."""
    return json.loads(output[output.index("{") :])


def submit(federation: Federation, run_config: str) -> tuple[int, str]:
    """``flwr run . site --stream``; return the run id and its final status."""
    started = federation.flwr(
        "run", ".", "site", "--stream", "--format", "json", "--run-config", run_config
    )
    if started.returncode != 0:
        raise RuntimeError(f"flwr run failed:\n{started.stdout}\n{started.stderr}")
    run_id = int(json_of(started.stdout)["run-id"])
    listed = federation.flwr("ls", "site", "--run-id", str(run_id), "--format", "json")
    return run_id, json_of(listed.stdout)["runs"][0]["status"]


def run_log(federation: Federation, run_id: int) -> str:
    """The logs of run ``run_id`` (``flwr log``)."""
    shown = federation.flwr("log", str(run_id), "site", "--show")
    return shown.stdout + shown.stderr
