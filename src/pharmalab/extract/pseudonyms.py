"""Keyed pseudonyms and per-person date offsets: HMAC-SHA256 computed in the engine.

Method
------
For an identifier ``v`` of id column ``c`` (an integer, written in decimal) and the key ``K``::

    digest    = HMAC-SHA256(K, f"{c}:{v}".encode())                  (RFC 2104)
    pseudonym = int.from_bytes(digest[0:8], "big") & (2**63 - 1)    a non-negative BIGINT
    x         = int.from_bytes(digest[8:12], "big") % (2 * N)
    offset    = x - N if x < N else x - N + 1                       in [-N, -1] ∪ [1, N] days

so a pseudonym is the digest's first 63 bits and a person's date offset comes from bits the
pseudonym does not show: knowing a pseudonym tells nothing about the offset, and both are
reproducible with the key. The column label ``c`` (``person_id``, ``visit_occurrence_id``, …;
``preceding_visit_occurrence_id`` is labelled ``visit_occurrence_id`` so it still links)
separates the id spaces: equal numbers in two id columns (a person 17 and a condition 17)
get unrelated pseudonyms, so the output does not reveal equalities between original ids.
OMOP's 0 ("no such record", e.g. ``visit_detail_id`` = 0) stays 0. :func:`pseudonym` and
:func:`date_offset` are the Python reference, equal to
``hmac.new(key, f"{c}:{v}".encode(), hashlib.sha256)``.

In the engine HMAC is built from the engine's SHA-256 over binary values (RFC 2104 §2)::

    HMAC(K, m) = SHA256((K' ⊕ opad) ‖ SHA256((K' ⊕ ipad) ‖ m))

with ``K'`` the key zero-padded to 64 bytes (hashed first if longer). The two padded keys are
constants computed here; the engine concatenates hex strings and decodes them with
``unhex`` (PostgreSQL ``decode(…, 'hex')``, BigQuery ``FROM_HEX``), hashes with DuckDB's
``sha256(BLOB)`` / Spark's ``sha2(BINARY, 256)`` (Ibis's ``HexDigest``) / PostgreSQL's
``sha256(bytea)`` / BigQuery's ``SHA256(BYTES)``, and reads hex digits as integers (DuckDB
and BigQuery ``CAST('0x…' AS BIGINT/INT64)``, Spark ``conv(…, 16, 10)``, PostgreSQL digit by
digit). On BigQuery the SQL is compiled and checked offline (``tests/test_bigquery.py``); no
test runs it on a BigQuery project. The padded keys reach the engine as the columns of a
one-row temporary table joined to the data (:func:`key_table`), never as literals in the SQL
text, so the key does not appear in query logs, plans or error messages (Spark prints whole
plans in them).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa

from pharmalab.engine import Database
from pharmalab.extract.errors import ExtractInputError
from pharmalab.extract.keys import PseudonymKey

MASK_63 = (1 << 63) - 1
IPAD_COLUMN, OPAD_COLUMN = "_k_ipad", "_k_opad"
_BLOCK = 64  # SHA-256 block size in bytes


def id_label(column: str) -> str:
    """The label of an id column in the HMAC message: the column, ``preceding_`` removed."""
    return column.removeprefix("preceding_")


def pseudonym(key: bytes | PseudonymKey, value: int | str, column: str = "person_id") -> int:
    """The pseudonym of ``value`` of id column ``column``: the first 63 bits of
    HMAC-SHA256(key, f"{column}:{value}").

    Returns
    -------
    int
        In [0, 2**63 − 1] (a BIGINT).
    """
    return int.from_bytes(_digest(key, f"{id_label(column)}:{value}")[:8], "big") & MASK_63


def date_offset(key: bytes | PseudonymKey, value: int | str, max_days: int) -> int:
    """The date offset (days) of person ``value``: uniform over [−N, −1] ∪ [1, N], N = max_days.

    ``max_days = 0`` gives 0 (no shift).
    """
    if max_days <= 0:
        return 0
    x = int.from_bytes(_digest(key, f"person_id:{value}")[8:12], "big") % (2 * max_days)
    return x - max_days if x < max_days else x - max_days + 1


def _digest(key: bytes | PseudonymKey, value: int | str) -> bytes:
    secret = key.secret if isinstance(key, PseudonymKey) else key
    return hmac.new(secret, str(value).encode("utf-8"), hashlib.sha256).digest()


def padded_keys(key: bytes | PseudonymKey) -> tuple[str, str]:
    """(K' ⊕ ipad, K' ⊕ opad) as hex (RFC 2104 §2)."""
    secret = key.secret if isinstance(key, PseudonymKey) else key
    if len(secret) > _BLOCK:
        secret = hashlib.sha256(secret).digest()
    secret = secret.ljust(_BLOCK, b"\0")
    return (bytes(b ^ 0x36 for b in secret).hex(), bytes(b ^ 0x5C for b in secret).hex())


@contextlib.contextmanager
def key_table(db: Database, key: PseudonymKey) -> Iterator[ir.Table]:
    """A temporary one-row table of the padded keys (``_k_ipad``, ``_k_opad``, hex text),
    dropped on exit.

    A temporary table (DuckDB) or view (Spark) lives in the engine's memory for this
    session only, never in the database files. Not an Ibis ``memtable``: Ibis's Spark
    backend does not register memtables before ``Table.cache()``, which then fails with
    TABLE_OR_VIEW_NOT_FOUND.

    Raises
    ------
    ExtractInputError
        For engines other than DuckDB, Spark, PostgreSQL and BigQuery.
    """
    check_engine(db.url.kind)
    name = f"_pl_keys_{secrets.token_hex(8)}"
    ipad, opad = padded_keys(key)
    if db.url.kind == "pyspark":  # Ibis cannot create temporary tables on Spark: a view
        db.con._session.createDataFrame(
            [(ipad, opad)], f"{IPAD_COLUMN} string, {OPAD_COLUMN} string"
        ).createOrReplaceTempView(name)
        table = db.con.table(name)
    else:  # BigQuery: a table of the session dataset, loaded from Arrow (no SQL literal)
        table = db.con.create_table(
            name, pa.table({IPAD_COLUMN: [ipad], OPAD_COLUMN: [opad]}), temp=True)
    try:
        yield table
    finally:
        if db.url.kind == "duckdb":
            db.con.raw_sql(f'DROP TABLE IF EXISTS temp.main."{name}"')
        elif db.url.kind == "postgres":
            db.con.raw_sql(f'DROP TABLE IF EXISTS pg_temp."{name}"')
        elif db.url.kind == "bigquery":
            namespace = table.op().namespace
            db.con.drop_table(name, database=(namespace.catalog, namespace.database),
                              force=True)
        else:
            db.con._session.catalog.dropTempView(name)


@ibis.udf.scalar.builtin(name="unhex")
def _unhex(value: str) -> dt.binary:
    """Hex text → bytes (DuckDB and Spark ``unhex``)."""


@ibis.udf.scalar.builtin(name="hex")
def _hex(value: str) -> str:
    """Text → hex of its UTF-8 bytes (DuckDB and Spark ``hex``)."""


@ibis.udf.scalar.builtin(name="conv")
def _conv(value: str, from_base: int, to_base: int) -> str:
    """Spark ``conv``: a number written in one base, rewritten in another."""


@ibis.udf.scalar.builtin(name="decode")
def _pg_decode(value: str, encoding: str) -> dt.binary:
    """PostgreSQL ``decode(text, 'hex')``: hex text → bytea."""


@ibis.udf.scalar.builtin(name="encode")
def _pg_encode(value: dt.binary, encoding: str) -> str:
    """PostgreSQL ``encode(bytea, 'hex')``: bytea → lowercase hex text."""


@ibis.udf.scalar.builtin(name="convert_to")
def _pg_convert_to(value: str, encoding: str) -> dt.binary:
    """PostgreSQL ``convert_to(text, 'UTF8')``: the text's bytes."""


@ibis.udf.scalar.builtin(name="sha256")
def _pg_sha256(value: dt.binary) -> dt.binary:
    """PostgreSQL's built-in ``sha256(bytea)`` (core since PostgreSQL 11, no pgcrypto), and
    BigQuery's ``SHA256(BYTES)``."""


def _sha256_hex(value: ir.BinaryValue) -> ir.StringValue:
    # Ibis exposes hexdigest on strings only; its operation accepts binary, which DuckDB's
    # sha256 and Spark's sha2(…, 256) hash as bytes.
    return ops.HexDigest(value, "sha256").to_expr()


@ibis.udf.scalar.builtin(name="from_hex")
def _bq_from_hex(value: str) -> dt.binary:
    """BigQuery ``FROM_HEX(STRING)``: hex text → BYTES."""


@ibis.udf.scalar.builtin(name="to_hex")
def _bq_to_hex(value: dt.binary) -> str:
    """BigQuery ``TO_HEX(BYTES)``: BYTES → lowercase hex text."""


@ibis.udf.scalar.builtin(name="int8")
def _pg_int8(value: int) -> dt.int64:
    """PostgreSQL ``int8(integer)``: widen to BIGINT (Ibis drops a cast it thinks a no-op)."""


def _pg_hex8(s: ir.StringValue) -> ir.IntegerValue:
    # Σ digit·16^k over the eight digits, in BIGINT: strpos gives an int4 that Ibis believes
    # is int64, and 16^7·15 overflows int4.
    digits = ibis.literal("0123456789abcdef")
    value = _pg_int8(digits.find(s.substr(0, 1).lower()))
    for i in range(1, 8):
        value = value * 16 + _pg_int8(digits.find(s.substr(i, 1).lower()))
    return value


@dataclass(frozen=True)
class _EngineHex:
    """The engine's functions for hex text, bytes and SHA-256 (engine differences live here)."""

    unhex: Callable[[ir.StringValue], ir.BinaryValue]
    text_hex: Callable[[ir.StringValue], ir.StringValue]  # UTF-8 bytes of text, as hex
    sha256_hex: Callable[[ir.BinaryValue], ir.StringValue]
    hex8_to_int: Callable[[ir.StringValue], ir.IntegerValue]  # 8 hex digits → BIGINT


_ENGINES = {
    "duckdb": _EngineHex(_unhex, _hex, _sha256_hex, lambda s: ("0x" + s).cast("int64")),
    "pyspark": _EngineHex(_unhex, _hex, _sha256_hex,
                          lambda s: _conv(s, 16, 10).cast("int64")),
    "postgres": _EngineHex(lambda s: _pg_decode(s, "hex"),
                           lambda s: _pg_encode(_pg_convert_to(s, "UTF8"), "hex"),
                           lambda b: _pg_encode(_pg_sha256(b), "hex"),
                           _pg_hex8),
    # CAST(STRING AS BYTES) is the text's UTF-8 bytes; SHA256(BYTES) returns BYTES
    "bigquery": _EngineHex(_bq_from_hex,
                           lambda s: _bq_to_hex(s.cast("binary")),
                           lambda b: _bq_to_hex(_pg_sha256(b)),
                           lambda s: ("0x" + s).cast("int64")),
}
ENGINES = tuple(_ENGINES)


def check_engine(kind: str) -> None:
    """Raise unless pseudonyms can be computed on engine ``kind``.

    Raises
    ------
    ExtractInputError
        For engines other than DuckDB, Spark, PostgreSQL and BigQuery.
    """
    if kind not in _ENGINES:
        raise ExtractInputError(
            f"de-identified extraction computes HMAC in the engine and supports "
            f"{', '.join(ENGINES)}, not {kind!r}")


def hmac_hex(kind: str, rel: ir.Table, value: ir.Value,
             column: str = "person_id") -> ir.StringValue:
    """HMAC-SHA256 of ``f"{column}:{value}"`` as 64 lowercase hex digits, in the engine.

    ``rel`` is the relation holding ``value`` joined to :func:`key_table`; NULL stays NULL.
    """
    check_engine(kind)
    if value.type().is_floating() or value.type().is_decimal():
        value = value.cast("int64")
    text = value if value.type().is_string() else value.cast("string")
    text = ibis.literal(f"{id_label(column)}:") + text
    f = _ENGINES[kind]
    inner = f.sha256_hex(f.unhex(rel[IPAD_COLUMN] + f.text_hex(text)))
    return f.sha256_hex(f.unhex(rel[OPAD_COLUMN] + inner))


def digest_pseudonym(kind: str, digest: ir.StringValue) -> ir.IntegerValue:
    """The pseudonym (BIGINT) from a hex digest: its first 63 bits."""
    hex8 = _ENGINES[kind].hex8_to_int
    high = hex8(digest.substr(0, 8)) % 2147483648  # clears the top bit of the 64
    return high * 4294967296 + hex8(digest.substr(8, 8))


def digest_offset(kind: str, digest: ir.StringValue, max_days: int) -> ir.IntegerValue:
    """The date offset (days, int64) from a hex digest; see the module docstring."""
    if max_days <= 0:
        return ibis.literal(0, type="int64")
    x = _ENGINES[kind].hex8_to_int(digest.substr(16, 8)) % (2 * max_days)
    return ibis.ifelse(x < max_days, x - max_days, x - max_days + 1).cast("int64")
