"""Secrets at rest: platform credentials and webhook secrets, encrypted with a key list.

Keys come from FIELDCAL_CREDENTIAL_KEYS (Fernet keys, comma-separated, newest first).
New secrets are encrypted with the newest key; every listed key can still decrypt, so a
key is rotated by putting a new one first, running `fieldcal integration rekey` (which
re-encrypts everything with the newest key), then dropping the old one. Without a key,
storing or reading a secret fails closed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from server.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

SETTING = "FIELDCAL_CREDENTIAL_KEYS"


class Vault:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = keys
        self._fernet: MultiFernet | None = None

    @staticmethod
    def new_key() -> str:
        from cryptography.fernet import Fernet  # loaded on first use: most processes never do

        return Fernet.generate_key().decode("ascii")

    def _cipher(self) -> MultiFernet:
        from cryptography.fernet import Fernet, MultiFernet

        if self._fernet is None:
            if not self._keys:
                raise ConfigError(
                    f"{SETTING} is not set: secrets cannot be stored or read. Generate a key with "
                    "`python3 -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'` and set it.")
            try:
                self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in self._keys])
            except (ValueError, UnicodeEncodeError) as exc:
                raise ConfigError(f"{SETTING} holds a malformed key: each must be a Fernet key "
                                  "(32 url-safe base64-encoded bytes).") from exc
        return self._fernet

    def seal(self, values: dict[str, str]) -> str:
        """An encrypted token holding `values`; an empty dict seals to the empty string."""
        if not values:
            return ""
        return self._cipher().encrypt(json.dumps(values, sort_keys=True).encode("utf-8")).decode("ascii")

    def open(self, token: str) -> dict[str, str]:
        if not token:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            data = self._cipher().decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise ConfigError(f"a stored secret cannot be decrypted with the keys in {SETTING}: "
                              "was a key removed before `fieldcal integration rekey` ran?") from exc
        values = json.loads(data)
        return {str(k): str(v) for k, v in values.items()}

    def rotate(self, token: str) -> str:
        """The same secret, encrypted with the newest key."""
        if not token:
            return ""
        from cryptography.fernet import InvalidToken

        try:
            return self._cipher().rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise ConfigError(f"a stored secret cannot be decrypted with the keys in {SETTING}") from exc
