"""API keys: several valid at once (rotation), compared in constant time, logged by id only."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final

from pydantic import SecretStr

#: Hex characters of sha256(key) that make a key id: enough to tell keys apart in logs and
#: audit records, far too few to help guess a key.
KEY_ID_LENGTH: Final = 12
_BEARER: Final = "bearer "


def key_id(key: str) -> str:
    """The public name of ``key``: ``key-`` and a short sha256 prefix. Never the key itself."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:KEY_ID_LENGTH]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    authorization = headers.get("Authorization")
    if authorization is not None and authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip() or None
    api_key = headers.get("X-API-Key")
    if api_key is not None:
        return api_key.strip() or None
    return None


class ApiKeys:
    """The configured keys. ``identify`` compares against every one of them, always.

    Keys are held as their sha256 digests: comparing fixed-length digests with
    :func:`hmac.compare_digest` takes the same time whatever the presented key's length or
    content, and looping over all keys without an early exit hides which one matched.
    """

    def __init__(self, keys: Iterable[SecretStr | str]) -> None:
        secrets = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        self._entries: tuple[tuple[bytes, str], ...] = tuple(
            (_digest(secret), key_id(secret)) for secret in secrets if secret
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(identity for _, identity in self._entries)

    def identify(self, presented: str | None) -> str | None:
        """The id of the configured key equal to ``presented``, or None (also for no key)."""
        candidate = _digest(presented or "")
        found: str | None = None
        for digest, identity in self._entries:
            # No early exit: the time taken does not depend on which key (if any) matched.
            if hmac.compare_digest(candidate, digest):
                found = identity
        return found


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogateescape")).digest()
