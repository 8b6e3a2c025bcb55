"""The SQL sandbox of the results store: which statements may run, and a connection that cannot escape.

SQL typed into `slmrec query` or the app runs on the reader's own in-memory DuckDB, so it must not
write files, replace the views or read beyond the runs. Two layers, because each alone had holes:

* An allow-list of statement kinds, taken from DuckDB's own parser (`extract_statements`), never
  from a regex over the text: SELECT (which covers WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE),
  EXPLAIN of such a statement, and PRAGMAs that only report. DuckDB files IMPORT DATABASE under
  PRAGMA, and it runs the folder's schema.sql (ATTACH, CREATE, COPY ...): so a PRAGMA is allowed
  by name, not by kind. Every statement of the text is checked, then only one may run.
* The connection: files readable only under the runs folder, DuckDB's spill folder a private
  temporary folder outside the project (the default `<cwd>/.tmp` is readable by any query), no
  extension installed or loaded on demand, and the configuration locked so SQL cannot undo this.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import duckdb

READ_KINDS = "SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA table_info and other reporting PRAGMAs"
# PRAGMAs that only report on the connection; any other (import_database, enable_profiling, ...) is refused.
READ_PRAGMAS = frozenset({
    "version", "platform", "user_agent", "database_list", "show_databases", "show_tables",
    "show_tables_expanded", "table_info", "show", "database_size", "storage_info", "functions", "collations",
    "metadata_info",
})
_EXPLAIN = re.compile(r"^explain(\s+analy[sz]e)?(\s*\([^)]*\))?\s+", re.IGNORECASE)


class QueryRefused(ValueError):
    """The SQL is not exactly one statement that only reads."""


def check_read_only(sql: str) -> None:
    """Raise QueryRefused, naming the statement kind, unless `sql` is one statement that only reads."""
    statements = duckdb.extract_statements(sql)
    for statement in statements:
        text = _strip_comments(statement.query)
        try:
            kind = _not_a_read(text, statement.type)
        except ValueError:  # a statement type this duckdb module has no name for (UPDATE EXTENSIONS)
            kind = _first_words(text, 1).upper() or "unknown"
        if kind:
            raise QueryRefused(_refusal(kind))
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time; got {len(statements)}")


def _not_a_read(text: str, kind: duckdb.StatementType) -> str | None:
    """None for a read statement, else the statement's kind as the user wrote it ("IMPORT DATABASE")."""
    if kind == duckdb.StatementType.SELECT:
        return None
    if text[:6].upper() == "PRAGMA":  # "PRAGMA threads = 1" is a SET, IMPORT DATABASE a PRAGMA
        name = _first_words(text, 2)
        return None if kind == duckdb.StatementType.PRAGMA and name[7:].lower() in READ_PRAGMAS else name
    if kind == duckdb.StatementType.EXPLAIN:  # EXPLAIN ANALYZE runs its statement: judge that one
        explain = _EXPLAIN.match(text)
        inner = text[explain.end():] if explain else ""
        try:
            (statement,) = duckdb.extract_statements(inner)
            inner_kind = _not_a_read(_strip_comments(statement.query), statement.type)
        except (ValueError, duckdb.Error):  # none, several, or one DuckDB cannot name
            return "EXPLAIN"
        return f"{explain.group(0).strip().upper()} {inner_kind}" if inner_kind else None
    words = 2 if text[:6].upper() in ("IMPORT", "EXPORT") else 1
    return _first_words(text, words).upper() if text else kind.name


def _first_words(text: str, count: int) -> str:
    """The first `count` words of a statement ("PRAGMA import_database", "IMPORT DATABASE")."""
    return " ".join(re.findall(r"\w+", text)[:count])


def _refusal(kind: str) -> str:
    article = "an" if kind[:1].upper() in "AEIOU" else "a"
    return f"only read queries are allowed ({READ_KINDS}); this is {article} {kind} statement"


def _strip_comments(sql: str) -> str:
    return re.sub(r"^(\s*(--[^\n]*(\n|$)|/\*.*?\*/))*\s*", "", sql, flags=re.DOTALL)


def quote(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def lock_down(con: duckdb.DuckDBPyConnection, readable: Path) -> Path:
    """Confine `con` to reading files under `readable`; return its private spill folder (the caller removes it)."""
    spill = Path(tempfile.mkdtemp(prefix="slmrec-duckdb-"))  # mode 0700, outside the project and cwd
    for setting in (f"temp_directory = {quote(str(spill))}",
                    f"allowed_directories = [{quote(str(readable) + '/')}]",
                    "autoinstall_known_extensions = false", "autoload_known_extensions = false",
                    "allow_community_extensions = false", "enable_external_access = false",
                    "lock_configuration = true"):  # last: after it no SET, by us or by SQL, applies
        con.execute(f"SET {setting}")
    return spill
