"""Token vault: secrets sealed with AES-256-GCM under a named key; keys rotate without downtime.

Sealed form: b"zc1." + key id + b"." + 12-byte nonce + ciphertext (with tag). The key id lets old secrets
open after a new key becomes the one that seals; `rotate` re-seals everything under the newest key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zoomcal.errors import ConfigError

PREFIX = b"zc1."


class Vault:
    def __init__(self, keys: list[tuple[str, bytes]]):
        if not keys:
            raise ConfigError("the token vault has no key")
        for kid, key in keys:
            if len(key) != 32 or "." in kid or not kid:
                raise ConfigError(f"vault key {kid!r} must be 32 bytes with an id without dots")
        self.keys = dict(keys)
        self.current = keys[0][0]

    @classmethod
    def from_spec(cls, spec: str) -> Vault:
        """"kid:base64key,kid2:base64key" — the first key seals, all of them open."""
        keys = []
        for chunk in spec.split(","):
            kid, _, b64 = chunk.strip().partition(":")
            try:
                keys.append((kid, base64.urlsafe_b64decode(b64.encode())))
            except ValueError as exc:
                raise ConfigError(f"vault key {kid!r} is not base64") from exc
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path, create: bool = True) -> Vault:
        if not path.exists():
            if not create:
                raise ConfigError(f"no vault key file at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            spec = new_key_spec()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(spec + "\n")
        return cls.from_spec(path.read_text().strip())

    def seal(self, data: dict[str, Any]) -> bytes:
        nonce = secrets.token_bytes(12)
        blob = AESGCM(self.keys[self.current]).encrypt(nonce, json.dumps(data).encode(), self.current.encode())
        return PREFIX + self.current.encode() + b"." + nonce + blob

    def open(self, sealed: bytes) -> dict[str, Any]:
        if not sealed.startswith(PREFIX):
            raise ConfigError("not a sealed secret")
        kid, _, rest = sealed[len(PREFIX):].partition(b".")
        try:
            key = self.keys.get(kid.decode())
        except UnicodeDecodeError as exc:
            raise ConfigError("not a sealed secret") from exc
        if key is None:
            raise ConfigError(f"secret sealed with unknown key {kid.decode()!r}")
        try:
            plain = AESGCM(key).decrypt(rest[:12], rest[12:], kid)
        except (InvalidTag, ValueError) as exc:     # ValueError: no room for the nonce
            raise ConfigError("secret failed authentication (wrong key or tampered)") from exc
        return json.loads(plain)

    def key_id(self, sealed: bytes) -> str:
        return sealed[len(PREFIX):].partition(b".")[0].decode()

    def reseal(self, sealed: bytes) -> bytes:
        return sealed if self.key_id(sealed) == self.current else self.seal(self.open(sealed))


def new_key_spec(kid: str | None = None) -> str:
    kid = kid or "k" + secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"
