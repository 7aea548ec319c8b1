"""PostgreSQL: what differs from the other engines, in one place.

Each override says what PostgreSQL does and why the generic Ibis expression needs help. They
are applied once, when :func:`pharmalab.engine.connect` opens a PostgreSQL backend.
"""

from __future__ import annotations

import ibis.expr.datatypes as dt


def apply_overrides() -> None:
    """Patch Ibis's PostgreSQL compiler (idempotent)."""
    from ibis.backends.sql.compilers.postgres import PostgresCompiler

    if getattr(PostgresCompiler, "_pharmalab_overrides", False):
        return
    original = PostgresCompiler.visit_Cast

    def visit_cast(self, op, *, arg, to):
        # PostgreSQL casts boolean only to integer (int4): CAST(x > 0 AS BIGINT) is an error
        # ("cannot cast type boolean to bigint"), and Ibis 12 emits exactly that for
        # ``(cond).cast("int64")``, the usual way to count rows that meet a condition.
        # Go through int4, which PostgreSQL defines as true → 1, false → 0.
        if op.arg.dtype.is_boolean() and to.is_numeric() and not to.is_int32():
            return self.cast(self.cast(arg, dt.int32), to)
        return original(self, op, arg=arg, to=to)

    PostgresCompiler.visit_Cast = visit_cast
    PostgresCompiler.visit_TryCast = visit_cast
    PostgresCompiler._pharmalab_overrides = True
