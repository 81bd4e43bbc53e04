"""KServe v2 over TLS: a real engine.serve with a self-signed certificate made here (openssl),
the real tritonclient over HTTPS and gRPC with TLS; and the refusal of a non-loopback address
without TLS, which happens before anything binds."""
from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from server_process import ServerProcess
from tinynet import write_tiny_onnx
from tritonclient.utils import InferenceServerException

MODEL = "tinynet"
NUM_CLASSES = 10


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny_64.onnx", size=64, resize=72,
                           classes=NUM_CLASSES, seed=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tiny_onnx, certificate):
    cert, key = certificate
    with ServerProcess(["--onnx", str(tiny_onnx), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--threads", "1",
                        "--tls-cert", str(cert), "--tls-key", str(key)]) as proc:
        yield proc


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def assert_ready_and_classifies(client, flavour, seed: int):
    """Asks ``client`` (of tritonclient's ``flavour``, http or grpc, which share this API) whether the server
    and model are ready, classifies one raw image, checks the probabilities, and closes the client."""
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    tensor = flavour.InferInput("IMAGE", [48, 80, 3], "UINT8")
    tensor.set_data_from_numpy(image(seed))
    probs = client.infer(MODEL, [tensor]).as_numpy("PROBABILITIES")
    assert probs.shape == (NUM_CLASSES,) and abs(float(probs.sum()) - 1) < 1e-4
    client.close()


def test_https_serves_tritonclient_with_the_certificate(tls_server, certificate):
    url = tls_server.fronts["http"]
    assert url.startswith("https://127.0.0.1:")
    client = httpclient.InferenceServerClient(url.removeprefix("https://"), ssl=True,
                                              ssl_options={"ca_certs": str(certificate[0])})
    assert_ready_and_classifies(client, httpclient, seed=1)


def test_https_refuses_plain_http_and_an_unknown_certificate(tls_server):
    address = tls_server.fronts["http"].removeprefix("https://")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{address}/v2/health/ready", timeout=10).read()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{address}/v2/health/ready", timeout=10)


def test_grpc_with_tls_serves_tritonclient_with_the_certificate(tls_server, certificate):
    client = grpcclient.InferenceServerClient(tls_server.fronts["grpc"], ssl=True,
                                              root_certificates=str(certificate[0]))
    assert_ready_and_classifies(client, grpcclient, seed=2)
    plain = grpcclient.InferenceServerClient(tls_server.fronts["grpc"])
    with pytest.raises(InferenceServerException):
        plain.is_server_live(client_timeout=5)
    plain.close()


@pytest.mark.parametrize("flag", ["--http", "--grpc"])
def test_a_non_loopback_address_without_tls_is_refused_in_one_line(tiny_onnx, flag):
    """0.0.0.0 is refused before the model loads or anything binds, so the test sends no traffic."""
    proc = subprocess.run([sys.executable, "-m", "engine.serve", "--onnx", str(tiny_onnx), flag, "0.0.0.0:0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{flag} 0.0.0.0:0 is not a loopback address" in lines[0] and "--tls-cert" in lines[0]
    assert "--insecure" in lines[0]
