"""The secret key of the pseudonyms: where it comes from, and its public fingerprint.

Resolution order (first found wins): the ``key`` argument, the ``key_file`` argument, the
environment variable ``PHARMALAB_PSEUDONYM_KEY`` (the key itself), the environment variable
``PHARMALAB_PSEUDONYM_KEY_FILE`` (a path), and otherwise a random 32-byte key made for this
extraction only and never stored (its pseudonyms cannot be linked to any other extraction).

A key given as text is its UTF-8 bytes; a key file's bytes are used with surrounding
whitespace (a trailing newline) removed, so ``openssl rand -hex 32 > key`` works as is.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pharmalab.extract.errors import PseudonymKeyError

ENV_KEY = "PHARMALAB_PSEUDONYM_KEY"
ENV_KEY_FILE = "PHARMALAB_PSEUDONYM_KEY_FILE"
# RFC 2104 §3: keys shorter than the hash output (32 bytes) weaken HMAC; 16 bytes is the
# floor accepted here (128 bits).
MIN_KEY_BYTES = 16
_FINGERPRINT_MESSAGE = b"pharmalab pseudonym key fingerprint v1"


@dataclass(frozen=True)
class PseudonymKey:
    """A pseudonym key and where it came from (the secret never appears in its repr).

    Attributes
    ----------
    secret : bytes
        The HMAC key.
    source : str
        ``"argument"``, ``"file:PATH"``, ``"env:PHARMALAB_PSEUDONYM_KEY"``,
        ``"env:PHARMALAB_PSEUDONYM_KEY_FILE:PATH"`` or ``"random"`` (not stored).
    """

    secret: bytes = field(repr=False)
    source: str

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying the key: HMAC-SHA256(key, a fixed message), truncated.

        Two extractions with the same fingerprint used the same key (their pseudonyms link);
        the fingerprint reveals nothing about the key (HMAC is a pseudorandom function).
        """
        return hmac.new(self.secret, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]

    @property
    def stored(self) -> bool:
        """False for a random key made for one extraction (its pseudonyms cannot be linked)."""
        return self.source != "random"


def read_key(
    key: bytes | str | PseudonymKey | None = None,
    key_file: str | os.PathLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PseudonymKey:
    """Resolve the pseudonym key (order in the module docstring).

    Parameters
    ----------
    key
        The key itself (bytes, or text used as UTF-8).
    key_file
        A file holding the key.
    environ
        Where to look for ``PHARMALAB_PSEUDONYM_KEY`` / ``PHARMALAB_PSEUDONYM_KEY_FILE``
        (default ``os.environ``).

    Returns
    -------
    PseudonymKey

    Raises
    ------
    PseudonymKeyError
        If both ``key`` and ``key_file`` are given, a key file is missing or unreadable, or
        the key is shorter than 16 bytes.
    """
    if isinstance(key, PseudonymKey):
        return key
    if key is not None and key_file is not None:
        raise PseudonymKeyError("give either a pseudonym key or a key file, not both")
    env = os.environ if environ is None else environ
    if key is not None:
        return _checked(key.encode("utf-8") if isinstance(key, str) else bytes(key), "argument")
    if key_file is not None:
        return _from_file(Path(key_file), f"file:{key_file}")
    if ENV_KEY in env and ENV_KEY_FILE in env:
        raise PseudonymKeyError(f"both {ENV_KEY} and {ENV_KEY_FILE} are set: unset one (which "
                                "key is meant is ambiguous)")
    for name in (ENV_KEY, ENV_KEY_FILE):
        if name in env and not env[name].strip():
            raise PseudonymKeyError(f"{name} is set but empty (a missing key file in "
                                    "$(cat …)?): set a key or unset it")
    if env.get(ENV_KEY):
        return _checked(env[ENV_KEY].encode("utf-8"), f"env:{ENV_KEY}")
    if env.get(ENV_KEY_FILE):
        path = env[ENV_KEY_FILE]
        return _from_file(Path(path), f"env:{ENV_KEY_FILE}:{path}")
    return PseudonymKey(secrets.token_bytes(32), "random")


def _from_file(path: Path, source: str) -> PseudonymKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PseudonymKeyError(
            f"pseudonym key file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    return _checked(data.strip(), source)


def _checked(secret: bytes, source: str) -> PseudonymKey:
    if len(secret) < MIN_KEY_BYTES:
        where = source.removeprefix("file:").removeprefix("env:")
        raise PseudonymKeyError(
            f"pseudonym key from {where!r} has {len(secret)} bytes; expected at least "
            f"{MIN_KEY_BYTES} (e.g. openssl rand -hex 32)")
    return PseudonymKey(secret, source)
