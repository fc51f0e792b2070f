"""Which files an ingest reads: PATH arguments (files, directories, globs) -> typed source files.

Every problem here is found before anything is written: a path that does not exist, a glob that
matches nothing, a file of an unsupported kind.  Inside a directory (searched recursively), files
of other kinds and hidden files are skipped (and listed in the summary), so a README beside the
dumps does not stop an ingest.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from warehouse.duckdb_paths import GLOB_CHARACTERS, check_exact
from warehouse.errors import UserError, first_line, not_utf8
from warehouse.ingest.sqltext import int_lit

# file name ending -> format
EXTENSIONS: dict[str, str] = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".ndjson.gz": "ndjson",
    ".jsonl.gz": "ndjson",
    ".json": "json",  # a JSON array of events, one event object, or NDJSON
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
}

# Every record of a batch is numbered `pos = source index << POS_SHIFT | record number`
# (pos_sql), so ordering by `pos` is input order and the first copy of a duplicate wins.
POS_SHIFT = 40
# The longest line or CSV row read.  DuckDB's CSV reader (2.0) needs a read buffer larger than
# that (its default, 16 times as large, is 4 GiB: more than the memory limit for a gzipped file),
# and it drops a line longer than its buffer without an error: so reads are checked
# (warehouse.ingest.json_records).
MAX_LINE_BYTES = 256 * 1024 * 1024
READ_BUFFER_BYTES = 2 * MAX_LINE_BYTES


@dataclass(frozen=True)
class SourceFile:
    index: int  # position in the batch: the first file's events win duplicates
    path: Path  # absolute
    format: str  # ndjson | json | csv | parquet
    size: int
    # A piece of a large NDJSON file (warehouse.ingest.chunks): its bytes [start, end) of
    # `path`, copied to `read_from`, whose first line is line `lines_before` + 1 of `path`.
    span: tuple[int, int] | None = None
    read_from: Path | None = None
    lines_before: int = 0

    @property
    def name(self) -> str:
        """The file as messages and rejects name it (a piece's whole file)."""
        return str(self.path)

    @property
    def gzipped(self) -> bool:
        return self.path.name.lower().endswith(".gz")

    @property
    def read_path(self) -> Path:
        """The file DuckDB reads."""
        return self.read_from or self.path


@contextmanager
def open_source(path: Path, mode: str = "rb", **options: Any) -> Iterator[IO[Any]]:
    """A source file opened for meterql's own passes over it, decompressed when its name ends
    in .gz; a damaged gzip file (not gzipped, cut short, corrupt, trailing bytes) raises a
    UserError naming it, in the block as it is read."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, mode, **options) as handle:
            yield handle
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise UserError(
            f"cannot read {format_of(path)} file {path}: it is not a valid gzip file ({error})"
        ) from None


def first_non_utf8(path: Path, block_size: int = 1 << 20) -> tuple[int, int] | None:
    """(line from 1, first byte) of the first byte sequence in the text file at `path`
    (decompressed when its name ends in .gz) that is not UTF-8; None when it is all UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    with open_source(path) as handle:
        while True:
            block = handle.read(block_size)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                # the decoder may hold back the last bytes of the block before: a sequence
                # that started there has its first byte in `error.object` too
                held = len(error.object) - len(block)
                at = error.start - held
                return newlines + block.count(b"\n", 0, max(at, 0)) + 1, error.object[error.start]
            if not block:
                return None
            newlines += block.count(b"\n")


def read_failure(file: SourceFile, error: BaseException) -> UserError:
    """The error for a source file DuckDB could not read: DuckDB's first line, or for a file
    whose text is not UTF-8 (DuckDB: "CSV Error on Line: N", whatever the format) its line and
    byte."""
    detail = first_line(error)
    text = str(error).lower()
    if "utf-8" in text or "unicode" in text:
        found = first_non_utf8(file.read_path)
        if found is not None:
            line, byte = found
            detail = (
                f"line {file.lines_before + line} is not UTF-8 text (byte 0x{byte:02X}); "
                "save the file as UTF-8"
            )
    return UserError(f"cannot read {file.format} file {file.name}: {detail}")


def pos_sql(file: SourceFile, record_sql: str) -> str:
    """SQL: the position of the record numbered `record_sql` (from 1) in `file`."""
    record = f"{int_lit(file.lines_before)} + ({record_sql})" if file.lines_before else record_sql
    return f"({int_lit(file.index)}::BIGINT << {POS_SHIFT}) + ({record})"


def listed_pos_sql(files: Sequence[SourceFile], place_sql: str, record_sql: str) -> str:
    """SQL: the position of the record numbered `record_sql` (from 1) in the file at place
    `place_sql` (from 0) of `files`, read together (DuckDB's `file_index`)."""
    indexes = "[" + ", ".join(int_lit(f.index) for f in files) + "]"
    return f"(({indexes})[CAST({place_sql} AS BIGINT) + 1]::BIGINT << {POS_SHIFT}) + ({record_sql})"


@dataclass(frozen=True)
class Sources:
    files: tuple[SourceFile, ...]
    skipped: tuple[str, ...]  # files inside directories that are not event dumps


def format_of(path: Path) -> str | None:
    name = path.name.lower()
    for ending in sorted(EXTENSIONS, key=len, reverse=True):
        if name.endswith(ending):
            return EXTENSIONS[ending]
    return None


def _supported() -> str:
    return ", ".join(EXTENSIONS)


def _shown(path: Path) -> str:
    """The path as text for messages and the JSON summary: bytes of its name that are not UTF-8
    as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _directory_files(directory: Path) -> list[Path]:
    """The files under `directory` (hidden ones left out); a directory that cannot be listed
    (no permission) is an error, never a silent gap in the batch."""
    found = []

    def unreadable(error: OSError) -> None:
        raise UserError(
            f"cannot list {_shown(Path(error.filename or directory))} inside ingest path "
            f"{_shown(directory)}: {error.strerror or error} (nothing was ingested)"
        )

    for root, dirs, names in os.walk(directory, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return found


def resolve_sources(paths: Sequence[str | os.PathLike[str]]) -> Sources:
    """Expand the PATH arguments into source files, in argument order (then path order)."""
    if not paths:
        raise UserError("ingest needs at least one PATH (a file, a directory or a glob)")
    chosen: list[Path] = []
    skipped: list[str] = []
    for raw in paths:
        text = os.fspath(raw)
        candidate = Path(text).expanduser()
        try:
            exists = candidate.exists()
        except OSError as error:  # e.g. a name too long: the file system refuses the path
            raise UserError(f"ingest path {text!r}: {error.strerror or error}") from None
        if exists:
            matches = [candidate]
        elif GLOB_CHARACTERS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(str(candidate), recursive=True))]
            if not matches:
                raise UserError(f"ingest path {text!r}: the glob matches no file")
        else:
            raise UserError(f"ingest path {text!r} does not exist")
        for match in matches:
            if match.is_dir():
                inside = _directory_files(match)
                usable = [p for p in inside if format_of(p) is not None]
                skipped.extend(_shown(p.absolute()) for p in inside if format_of(p) is None)
                if not usable and not GLOB_CHARACTERS & set(text):
                    raise UserError(
                        f"ingest path {text!r} is a directory with no event files "
                        f"(expected files ending in {_supported()})"
                    )
                chosen.extend(usable)
            elif format_of(match) is None:
                if match is candidate:  # named explicitly: an error, not a silent skip
                    raise UserError(
                        f"ingest path {text!r} has an unsupported file type "
                        f"(expected a file ending in {_supported()})"
                    )
                skipped.append(_shown(match.absolute()))
            else:
                chosen.append(match)
    seen: set[Path] = set()
    files: list[SourceFile] = []
    for path in chosen:
        absolute = path.absolute()
        if absolute in seen:
            continue
        seen.add(absolute)
        if (problem := not_utf8(str(absolute))) is not None:
            raise UserError(f"ingest file {problem}; rename it (DuckDB takes only UTF-8 paths)")
        if (why := check_exact(absolute)) is not None:
            raise UserError(f"ingest file {str(absolute)!r}: {why}")
        fmt = format_of(absolute)
        assert fmt is not None
        files.append(SourceFile(len(files), absolute, fmt, absolute.stat().st_size))
    if not files:
        raise UserError(
            "ingest found no event files in " + ", ".join(repr(os.fspath(p)) for p in paths)
        )
    return Sources(tuple(files), tuple(skipped))
