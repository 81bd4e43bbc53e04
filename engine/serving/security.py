"""Who may connect: loopback by default, CURVE for anything else.

CURVE keys are the files pyzmq's ``zmq.auth.create_certificates`` writes: a server's
``*.key_secret`` (holding both halves), and a folder of clients' public ``*.key`` files.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

LOCAL_TRANSPORTS = ("ipc://", "inproc://")


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and tcp on a loopback address or ``localhost``."""
    if endpoint.startswith(LOCAL_TRANSPORTS):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    return is_loopback_host(endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]"))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address; "*", an interface name or a host name is not provably one."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_secret_key(path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` certificate file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CURVE secret key {path}: no such file")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as e:
        raise ValueError(f"CURVE secret key {path}: not a certificate file ({e})") from None
    if not secret:
        raise ValueError(f"CURVE secret key {path}: holds only a public key (use the .key_secret file)")
    return public, secret


def load_public_key(path_or_key) -> bytes:
    """A Z85 public key given as 40 characters or as a certificate file holding one."""
    if isinstance(path_or_key, bytes) and len(path_or_key) == 40:
        return path_or_key
    path = Path(path_or_key.decode() if isinstance(path_or_key, bytes) else path_or_key)
    if not path.is_file():
        if len(str(path_or_key)) == 40:
            return str(path_or_key).encode()
        raise FileNotFoundError(f"CURVE public key {path}: no such file")
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as e:
        raise ValueError(f"CURVE public key {path}: not a certificate file ({e})") from None
    return public


def enable_curve_server(socket: zmq.Socket, secret_key_file, authorized_keys_dir) -> ThreadAuthenticator:
    """Make ``socket`` (before it binds) a CURVE server that admits only the listed clients."""
    authorized = Path(authorized_keys_dir)
    if not authorized.is_dir():
        raise FileNotFoundError(f"CURVE authorized keys {authorized}: no such folder")
    if not any(authorized.glob("*.key")):
        raise ValueError(f"CURVE authorized keys {authorized}: no client *.key files in it")
    public, secret = load_secret_key(secret_key_file)
    auth = ThreadAuthenticator(socket.context)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized))
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_server = True
    return auth


def enable_curve_client(socket: zmq.Socket, server_public_key, client_secret_key_file) -> None:
    """Make ``socket`` (before it connects) a CURVE client of the server with that key."""
    public, secret = load_secret_key(client_secret_key_file)
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = load_public_key(server_public_key)
