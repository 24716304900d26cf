"""Signing secrets sealed at rest: AES-GCM under a key derived from the deployment's webhook secret
(made by migration 0008), with the workspace's id as associated data, so a sealed secret copied to
another workspace's row does not open."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..persistence.tenancy import DeploymentSecret

KEY_NAME = "webhook_secret_key"
_NONCE_BYTES = 12


class Vault:
    def __init__(self, secret: bytes):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"voxplane webhook secrets v1").derive(secret)
        self._aead = AESGCM(key)

    @classmethod
    def of(cls, session: Session) -> Vault:
        secret = session.scalar(select(DeploymentSecret.value).where(DeploymentSecret.name == KEY_NAME))
        if secret is None:
            raise RuntimeError("the database is not migrated: run `voxplane migrate` first")
        return cls(secret)

    def seal(self, workspace_id: int, secret: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), str(workspace_id).encode())

    def open(self, workspace_id: int, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], str(workspace_id).encode()).decode()
