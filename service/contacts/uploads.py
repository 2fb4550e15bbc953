"""Contact files in: stream to disk, parse in a worker thread, ingest in batches.

An upload (`POST /contacts/uploads`, `callpact import contacts`) goes
through four steps, none of which holds the whole file in memory:

1. **Spool.** The request body is streamed chunk by chunk into a temporary
   file (`TMPDIR`; point it at a disk, not a RAM disk, for big uploads).
   The body limit of `…/uploads` routes applies while streaming.
2. **Parse** in a worker thread (`asyncio.to_thread`), batch by batch: the
   parser is a generator over the file, advanced `batch_size` items at a
   time, so the event loop never runs parsing and memory stays at one batch.
3. **Ingest** each batch with `ingest_records` (contacts) and
   `ingest_agent_states` (the agent states a `queue_log` carries), in the
   caller's transaction: one transaction per request; the command line
   commits per batch instead (`UploadImport` is driven step by step).
4. **Continue.** A `queue_log` is a stream cut into files: the parser's
   state (calls still waiting at the end of the file, the last second
   imported) is kept per tenant and source in `ingest_sources` and handed
   to the next import of that source, so a call waiting at the end of one
   file is completed by the next, and a rotated file that repeats the tail
   of the last one imports each line once. Calls still open are ingested
   as provisional records (`in_queue`, or answered and still talking):
   live figures show them, and the record of how they ended replaces them
   (a higher `source_version`: ingestion's "newer version wins").

Imports of one source are serialized by a PostgreSQL advisory lock on
(tenant, kind, source): a second import of the same source while one runs
is refused with 409 instead of both reading the same state and one losing
the other's open calls.

Whole-file refusals (422, nothing written): an Amazon Connect file that is
not valid JSON (the issues name line and column) and a CSV whose header
lacks a mapped column. Everything else is reported item by item while
every valid record lands: parser issues and ingestion rejections both as
`problems` naming `line` and/or `record` and the `field`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.contacts.agent_states import AgentStateReceipt, ingest_agent_states
from service.contacts.ingest import Receipt, RowProblem, ingest_records
from service.contacts.parsers._common import ImportStats
from service.contacts.parsers.amazon_connect import ConnectImport, parse_ctr
from service.contacts.parsers.csv_records import CsvMapping, CsvRecordParser
from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.parsers.queue_log_tables import (
    extended_table_rows,
    mysql_dump_rows,
    psql_table_rows,
)
from service.contacts.records import (
    AgentStateEvent,
    ContactRecord,
    ParsedItem,
    ParseIssue,
    excerpt,
)
from service.contacts.schemas import CSV_MAPPING
from service.core.errors import AppError, Conflict

UploadFormat = Literal[
    "csv",
    "queue_log",
    "queue_log_extended_csv",
    "queue_log_mysql",
    "queue_log_psql",
    "amazon_connect",
]
FORMATS: tuple[str, ...] = get_args(UploadFormat)
QUEUE_LOG_FORMATS = frozenset(
    {"queue_log", "queue_log_extended_csv", "queue_log_mysql", "queue_log_psql"}
)
ZONED_FORMATS = frozenset({"queue_log_mysql", "queue_log_psql"})
"""Table exports whose times are local and carry no zone: the upload names it."""
SOURCE_KINDS: dict[str, str] = {
    "csv": "csv",
    "amazon_connect": "amazon_connect",
    "queue_log": "queue_log",
    "queue_log_extended_csv": "queue_log",
    "queue_log_mysql": "queue_log",
    "queue_log_psql": "queue_log",
}
BATCH_SIZE = 10_000
MAX_CONNECT_BYTES = 256 << 20
"""Amazon Connect files are parsed whole (a JSON value may span any number of lines); CTR
exports come as files of a few MB, so a bigger one is refused rather than held in memory."""
MAX_PROBLEMS = 1_000
KEEPALIVE_S = 10.0
"""While a slow client uploads, the request's transaction (opened to authenticate)
would sit idle past `idle_in_transaction_session_timeout`; a trivial query this
often keeps it alive."""
_SPOOL_WRITE = 1 << 20

log = structlog.get_logger("callpact.uploads")


class UploadOptionInvalid(AppError):
    status = 422
    code = "upload_option_invalid"
    title = "An upload option is invalid"


class UploadRefused(AppError):
    status = 422
    code = "upload_refused"
    title = "The file cannot be imported"


class UploadIncomplete(AppError):
    status = 400
    code = "upload_incomplete"
    title = "The upload ended before the body was complete"


class UploadTooLargeForFormat(AppError):
    status = 413
    code = "upload_too_large_for_format"
    title = "The file is too large for its format"


class ImportSourceBusy(Conflict):
    code = "import_source_busy"
    title = "Another import of this source is running"


# ---- what to import ------------------------------------------------------------------


@dataclass(frozen=True)
class UploadSpec:
    """One file to import and how to read it."""

    format: UploadFormat
    file_name: str
    """Goes into each record's `raw_ref` (`file:line`)."""
    source: str | None = None
    """The source's name (a PBX, an export job): queue_log continuation state is per source."""
    mapping: CsvMapping | None = None
    time_zone: str | None = None
    """The zone of the local times of a MySQL dump or psql listing of `queue_log`."""

    @property
    def kind(self) -> str:
        return SOURCE_KINDS[self.format]


def _text_option(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not value or len(value) > limit or not value.isprintable():
        raise UploadOptionInvalid(f"{name}: 1-{limit} printable characters.", field=name)
    return value


def csv_mapping(raw: str | bytes | dict[str, Any], source: str | None) -> CsvMapping:
    """The CSV column mapping from its JSON form; 422 naming the setting when invalid."""
    try:
        data = (
            CSV_MAPPING.validate_python(raw)
            if isinstance(raw, dict)
            else CSV_MAPPING.validate_json(raw)
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        setting = f"mapping.{where}" if where else "mapping"
        raise UploadOptionInvalid(f"{setting}: {first['msg']}", field=setting) from None
    options: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
    options.setdefault("source", f"csv:{source}" if source else "csv")
    encoding = options.get("encoding", "utf-8-sig")
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise UploadOptionInvalid(
            f"mapping.encoding: unknown encoding {encoding!r}", field="mapping.encoding"
        ) from None
    if not getattr(codec, "_is_text_encoding", True):
        # rot13, base64, zlib …: codecs, but not of bytes to text (the reader would fail).
        raise UploadOptionInvalid(
            f"mapping.encoding: {encoding!r} is not a text encoding", field="mapping.encoding"
        )
    try:
        return CsvMapping(**options)
    except ValueError as exc:
        setting, _, reason = str(exc).partition(": ")
        name = f"mapping.{setting}" if reason else "mapping"
        raise UploadOptionInvalid(f"{name}: {reason or exc}", field=name) from None


def upload_spec(
    format: str,
    *,
    file_name: str | None = None,
    source: str | None = None,
    mapping: str | bytes | dict[str, Any] | None = None,
    time_zone: str | None = None,
) -> UploadSpec:
    """Validate an upload's options before a byte of the file is read."""
    if format not in FORMATS:
        raise UploadOptionInvalid(f"format: one of {', '.join(FORMATS)}", field="format")
    source = _text_option("source", source, 100)
    name = _text_option("filename", file_name, 200) or "upload"
    if format in QUEUE_LOG_FORMATS and source is None:
        raise UploadOptionInvalid(
            "source: name the PBX this queue_log comes from; the next file of the same "
            "source continues where this one ends.",
            field="source",
        )
    parsed: CsvMapping | None = None
    if format == "csv":
        if mapping is None:
            raise UploadOptionInvalid(
                "mapping: a CSV upload needs its column mapping (JSON).", field="mapping"
            )
        parsed = csv_mapping(mapping, source)
    elif mapping is not None:
        raise UploadOptionInvalid("mapping: only CSV uploads take a mapping.", field="mapping")
    if format in ZONED_FORMATS:
        if time_zone is None:
            raise UploadOptionInvalid(
                "time_zone: a queue_log table stores local times without a zone; name the "
                "PBX's IANA time zone (naive times are never guessed).",
                field="time_zone",
            )
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UploadOptionInvalid(
                f"time_zone: unknown time zone {time_zone!r}", field="time_zone"
            ) from None
    elif time_zone is not None:
        raise UploadOptionInvalid(
            "time_zone: only queue_log_mysql and queue_log_psql uploads take a time zone "
            "(CSV: in the mapping).",
            field="time_zone",
        )
    return UploadSpec(format, name, source, parsed, time_zone)  # type: ignore[arg-type]


# ---- spooling ------------------------------------------------------------------------

# Where bodies are spooled; None is tempfile's default (TMPDIR). A test points it at a
# folder it owns, because the shared system temp folder is written by other processes.
SPOOL_DIR: str | None = None


async def spool(
    chunks: AsyncIterable[bytes],
    *,
    keepalive: Callable[[], Awaitable[object]] | None = None,
    directory: str | None = None,
) -> tuple[Path, int]:
    """Write a streamed body to a temporary file; (its path, its size). The caller deletes it
    (`discard`). Disk writes run in a worker thread, a megabyte at a time."""
    folder = directory if directory is not None else SPOOL_DIR
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix="callpact-upload-", dir=folder)
    path = Path(name)
    out: IO[bytes] | None = None
    size = 0
    try:
        out = await asyncio.to_thread(os.fdopen, fd, "wb")
        pending = bytearray()
        last_ping = time.monotonic()
        async for chunk in chunks:
            pending += chunk
            size += len(chunk)
            if len(pending) >= _SPOOL_WRITE:
                await asyncio.to_thread(out.write, bytes(pending))
                pending.clear()
            if keepalive is not None and time.monotonic() - last_ping >= KEEPALIVE_S:
                await keepalive()
                last_ping = time.monotonic()
        if pending:
            await asyncio.to_thread(out.write, bytes(pending))
        await asyncio.to_thread(out.close)
    except BaseException:
        if out is not None:
            await asyncio.to_thread(out.close)
        else:
            os.close(fd)
        await discard(path)
        raise
    return path, size


async def discard(path: Path) -> None:
    await asyncio.to_thread(path.unlink, missing_ok=True)


# ---- reading: blocking, in a worker thread ------------------------------------------

Location = tuple[int | None, int | None]
"""(line, record) of an item in its file."""


def location_of(raw_ref: str) -> Location:
    """Where a record comes from in the current file, from its `raw_ref`:
    `f:13,19,20` → line 13; `f:#10,#12` → record 10; `f:7[2]` → line 7; the last
    file of a multi-file ref (`a:1;b:4` → line 4 of b)."""
    last = raw_ref[raw_ref.rfind(";") + 1 :]
    token = last.rpartition(":")[2].split(",", 1)[0].split("-", 1)[0].split("[", 1)[0]
    if token.startswith("#"):
        return (None, int(token[1:])) if token[1:].isdigit() else (None, None)
    return (int(token), None) if token.isdigit() else (None, None)


MAX_LINE = 1 << 16


def bounded_lines(text: IO[str], name: str) -> Iterator[tuple[int, str] | ParseIssue]:
    """(line number, line) of a text file, a line longer than `MAX_LINE` characters reported
    instead (and skipped without being held): a file without newlines is not one huge line
    in memory. `queue_log` lines are short (under 1 KB in every sample)."""
    readline = text.readline
    number = 0
    while True:
        line = readline(MAX_LINE)
        if not line:
            return
        number += 1
        if len(line) >= MAX_LINE and not line.endswith(("\n", "\r")):
            while True:  # the rest of the line, a block at a time
                more = readline(MAX_LINE)
                if not more or more.endswith(("\n", "\r")):
                    break
            yield ParseIssue(
                file=name,
                line=number,
                reason=f"a line longer than {MAX_LINE} characters is not a queue_log event",
                excerpt=excerpt(line[:80]),
            )
            continue
        yield number, line


Item = tuple[ParsedItem, int | None]
"""A parsed item and, for CSV records, its record number."""


class _Reader:
    """The parser of one spooled file, advanced a batch at a time.

    Every method blocks (file I/O and parsing): call them through
    `asyncio.to_thread`, one at a time.
    """

    def __init__(self, path: Path, spec: UploadSpec, parser: QueueLogParser | None) -> None:
        self.path = path
        self.spec = spec
        self.queue_log: QueueLogParser | None = parser
        self.csv: CsvRecordParser | None = None
        self.connect: ConnectImport | None = None
        self._fp: IO[bytes] | None = None
        self._text: io.TextIOWrapper | None = None
        self._items: Iterator[ParsedItem] | None = None

    def _open(self) -> Iterator[ParsedItem]:
        spec = self.spec
        name = spec.file_name
        fp = self._fp = self.path.open("rb")
        if spec.format == "csv":
            assert spec.mapping is not None
            self.csv = CsvRecordParser(spec.mapping)
            return self.csv.parse(fp, name)
        if spec.format == "amazon_connect":
            # The Connect parser reads its file whole (JSON values span lines); CTR exports
            # come as files of a few MB per hour, far below the streamed formats.
            self.connect = parse_ctr(fp, name)
            return iter([*self.connect.issues, *self.connect.records])
        parser = self.queue_log = self.queue_log or QueueLogParser()
        if spec.format == "queue_log":
            # Held here and closed explicitly: a wrapper left to the garbage collector when the
            # parser's generator ends would close the file with a ResourceWarning.
            self._text = io.TextIOWrapper(fp, encoding="utf-8", errors="replace", newline="")
            return parser.parse_rows(bounded_lines(self._text, name), name, refs="line")
        if spec.format == "queue_log_extended_csv":
            return parser.parse_rows(extended_table_rows(fp, name), name)
        assert spec.time_zone is not None
        if spec.format == "queue_log_psql":
            # psql's aligned output, as documentation and support tickets quote it; read
            # whole and sorted by the adapter (such excerpts are often newest first).
            return parser.parse_rows(
                psql_table_rows(fp, name, time_zone=spec.time_zone), name, refs="line"
            )
        return parser.parse_rows(
            mysql_dump_rows(fp, name, time_zone=spec.time_zone), name, refs="row"
        )

    def read(self, size: int) -> tuple[list[Item], int]:
        """Up to `size` items (empty at the end) and the bytes of the file read so far."""
        items = self._items
        if items is None:
            items = self._items = self._open()
        batch: list[Item] = []
        csv_parser = self.csv
        for item in items:
            if csv_parser is not None and item.__class__ is ContactRecord:
                # The parser counts data rows as it reads: this record's number.
                batch.append((item, csv_parser.stats.items))
            else:
                batch.append((item, None))
            if len(batch) >= size:
                break
        position = self._fp.tell() if self._fp is not None and not self._fp.closed else 0
        return batch, position

    @property
    def stats(self) -> ImportStats:
        if self.queue_log is not None:
            return self.queue_log.stats
        if self.csv is not None:
            return self.csv.stats
        if self.connect is not None:
            return self.connect.stats
        return ImportStats(file=self.spec.file_name)

    def close(self) -> None:
        if self._items is not None and hasattr(self._items, "close"):
            self._items.close()
        if self._text is not None:
            self._text.close()  # and the file under it
        if self._fp is not None:
            self._fp.close()


# ---- the import ----------------------------------------------------------------------


def _issue_problem(issue: ParseIssue) -> dict[str, Any]:
    return {
        "stage": "parse",
        "line": issue.line,
        "record": issue.record,
        "column": issue.column,
        "field": issue.field,
        "reason": issue.reason,
        "excerpt": issue.excerpt,
    }


def _row_problem(problem: RowProblem, where: Location, what: str) -> dict[str, Any]:
    return {
        "stage": "ingest",
        "line": where[0],
        "record": where[1],
        "column": None,
        "field": problem.field,
        "reason": problem.reason if what == "contact" else f"agent state: {problem.reason}",
        "excerpt": "",
    }


@dataclass
class UploadResult:
    """What one file gave: the merged receipts, the parser's counts and every problem."""

    spec: UploadSpec
    size: int = 0
    contacts: Receipt = field(default_factory=Receipt)
    contacts_rejected: int = 0
    agent_states: AgentStateReceipt = field(default_factory=AgentStateReceipt)
    agent_states_rejected: int = 0
    stats: ImportStats | None = None
    open_calls: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    problems_count: int = 0

    def problem(self, entry: dict[str, Any]) -> None:
        self.problems_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(entry)

    def as_dict(self) -> dict[str, Any]:
        c, a = self.contacts, self.agent_states
        stats = self.stats or ImportStats(file=self.spec.file_name)
        return {
            "format": self.spec.format,
            "source": self.spec.source,
            "file": self.spec.file_name,
            "bytes": self.size,
            "received": c.received,
            "accepted": c.accepted,
            "duplicates": c.duplicates,
            "updated": c.updated,
            "stale": c.stale,
            "rejected_count": self.contacts_rejected,
            "unmapped_queues": dict(c.unmapped_queues),
            "unmapped_agents": dict(c.unmapped_agents),
            "open_calls": self.open_calls,
            "agent_states": {
                "received": a.received,
                "accepted": a.accepted,
                "duplicates": a.duplicates,
                "unmapped": a.unmapped,
                "rejected_count": self.agent_states_rejected,
                "unmapped_agents": dict(a.unmapped_agents),
                "unmapped_queues": dict(a.unmapped_queues),
            },
            "stats": stats.to_json(),
            "problems_count": self.problems_count,
            "problems": self.problems,
        }


def _lock_key(tenant_id: uuid.UUID, spec: UploadSpec) -> str:
    return f"callpact.ingest_source:{tenant_id}:{spec.kind}:{spec.source}"


class UploadImport:
    """One file through its parser into the database, batch by batch.

    Drive it as `start` → `open` → `step` until False → `finish`, each with a
    session under the tenant's scope: one session for the whole file (a
    request) or one committed transaction per call (the command line, which
    then holds `source_lock` around the whole run). Never commits.
    """

    def __init__(
        self,
        tenant_id: uuid.UUID,
        spec: UploadSpec,
        *,
        projects: frozenset[uuid.UUID] | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.tenant_id = tenant_id
        self.spec = spec
        self.projects = projects
        self.batch_size = batch_size
        self.result = UploadResult(spec)
        self.position = 0
        self._parser: QueueLogParser | None = None
        self._reader: _Reader | None = None
        self._ahead: asyncio.Future[tuple[list[Item], int]] | None = None
        self._row = 0
        self._produced = 0
        self._last_event: datetime | None = None

    async def start(self, session: AsyncSession, *, lock: bool = True) -> None:
        """Lock the source for this transaction (unless the caller holds `source_lock`) and
        load its continuation state."""
        if self.spec.source is None:
            return
        if lock:
            got = (
                await session.execute(
                    text("select pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
                    {"k": _lock_key(self.tenant_id, self.spec)},
                )
            ).scalar_one()
            if not got:
                raise ImportSourceBusy(
                    f"An import of source {self.spec.source!r} is running; retry when it ends.",
                    field="source",
                )
        if self.spec.kind == "queue_log":
            state = (
                await session.execute(
                    text(
                        "select state from ingest_sources "
                        "where tenant_id = :t and kind = :k and name = :n"
                    ),
                    {"t": self.tenant_id, "k": self.spec.kind, "n": self.spec.source},
                )
            ).scalar_one_or_none()
            self._parser = await asyncio.to_thread(self._continue, state or None)

    def _continue(self, state: dict[str, Any] | None) -> QueueLogParser:
        """The parser where the last import of the source ended. A state this version cannot
        read (written by another parser version, damaged) is set aside with a problem: the
        import then starts afresh, which loses only the overlap check and the open calls
        (their ends are rebuilt from the logged durations; records are still deduplicated)."""
        if state is None:
            return QueueLogParser()
        try:
            return QueueLogParser(state)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("queue_log_state_unreadable", source=self.spec.source, error=str(exc))
            self.result.problem(
                {
                    "stage": "parse",
                    "line": None,
                    "record": None,
                    "column": None,
                    "field": "source",
                    "reason": f"the saved state of source {self.spec.source!r} could not be "
                    f"read ({exc}); this file was imported without it",
                    "excerpt": "",
                }
            )
            return QueueLogParser()

    def open(self, path: Path, size: int) -> None:
        if self.spec.format == "amazon_connect" and size > MAX_CONNECT_BYTES:
            raise UploadTooLargeForFormat(
                f"An Amazon Connect file is read whole; split files over {MAX_CONNECT_BYTES} "
                "bytes (one export per hour or per day each fit).",
                limit_bytes=MAX_CONNECT_BYTES,
            )
        self.result.size = size
        self._reader = _Reader(path, self.spec, self._parser)

    async def step(self, session: AsyncSession) -> bool:
        """Parse and ingest the next batch; False when the file is done."""
        reader = self._reader
        assert reader is not None, "open() first"
        ahead = self._ahead or asyncio.ensure_future(
            asyncio.to_thread(reader.read, self.batch_size)
        )
        self._ahead = None
        batch, self.position = await ahead
        if not batch:
            return False
        # Parse the next batch in the worker thread while this one is ingested.
        self._ahead = asyncio.ensure_future(asyncio.to_thread(reader.read, self.batch_size))
        self._refuse_if_unreadable(reader, batch)
        result = self.result
        contacts: list[tuple[int, ContactRecord]] = []
        events: list[tuple[int, AgentStateEvent]] = []
        where: dict[int, Location] = {}
        for item, record_no in batch:
            if isinstance(item, ParseIssue):
                result.problem(_issue_problem(item))
                continue
            self._row += 1
            if isinstance(item, ContactRecord):
                contacts.append((self._row, item))
                line, record = location_of(item.raw_ref)
                where[self._row] = (line, record_no if record_no is not None else record)
                if self._last_event is None or item.queued_at > self._last_event:
                    self._last_event = item.queued_at
            else:
                events.append((self._row, item))
                where[self._row] = location_of(item.raw_ref)
            self._produced += 1
        await self._ingest(session, contacts, events, where)
        return True

    def _refuse_if_unreadable(self, reader: _Reader, batch: list[Item]) -> None:
        """Whole-file refusals, decided on the first batch, before anything is written."""
        if self._produced:
            return
        issues = [item for item, _ in batch if isinstance(item, ParseIssue)]
        if not issues:
            return
        if self.spec.format == "amazon_connect":
            stats = reader.stats
            if stats.malformed:
                invalid = [i for i in issues if i.column is not None]
                first = invalid[0] if invalid else issues[0]
                raise UploadRefused(
                    f"Not valid JSON: line {first.line}, column {first.column}: {first.reason}. "
                    "Nothing was imported from this file.",
                    problems=[_issue_problem(i) for i in issues[:MAX_PROBLEMS]],
                    line=first.line,
                    column=first.column,
                )
        elif self.spec.format in ("csv", "queue_log_extended_csv"):
            header = [i for i in issues if i.line == 1 and i.record is None]
            if header and header[0] is batch[0][0]:
                first = header[0]
                what = f"{first.field}: {first.reason}" if first.field else first.reason
                raise UploadRefused(
                    f"{what}. Nothing was imported from this file.",
                    problems=[_issue_problem(i) for i in header[:MAX_PROBLEMS]],
                    line=1,
                    field=first.field,
                )

    async def _ingest(
        self,
        session: AsyncSession,
        contacts: list[tuple[int, ContactRecord]],
        events: list[tuple[int, AgentStateEvent]],
        where: dict[int, Location],
    ) -> None:
        result = self.result
        if contacts:
            receipt = await ingest_records(
                session, self.tenant_id, contacts, projects=self.projects
            )
            for problem in receipt.rejected:
                result.problem(
                    _row_problem(problem, where.get(problem.row, (None, None)), "contact")
                )
            result.contacts_rejected += len(receipt.rejected)
            receipt.rejected = []  # counted and reported above; never kept for a whole file
            result.contacts.merge(receipt)
        if events:
            agents = await ingest_agent_states(
                session, self.tenant_id, events, projects=self.projects
            )
            for problem in agents.rejected:
                result.problem(_row_problem(problem, where.get(problem.row, (None, None)), "agent"))
            result.agent_states_rejected += len(agents.rejected)
            agents.rejected = []
            result.agent_states.merge(agents)

    async def finish(self, session: AsyncSession) -> UploadResult:
        """Ingest the calls still open, save the source's state; the result."""
        reader = self._reader
        assert reader is not None, "open() first"
        await self.close()
        result = self.result
        result.stats = reader.stats
        parser = reader.queue_log
        if parser is not None:
            provisional = parser.open_records()
            result.open_calls = len(provisional)
            rows = []
            where: dict[int, Location] = {}
            for record in provisional:
                self._row += 1
                rows.append((self._row, record))
                where[self._row] = location_of(record.raw_ref)
            if rows:
                await self._ingest(session, rows, [], where)
            state = parser.state()
            watermark = state["watermark"]["time"]
            last_event = datetime.fromtimestamp(watermark, UTC) if watermark is not None else None
            await self._save_source(session, state, last_event)
        elif self.spec.source is not None:
            await self._save_source(session, None, self._last_event)
        return result

    async def _save_source(
        self, session: AsyncSession, state: dict[str, Any] | None, last_event: datetime | None
    ) -> None:
        await session.execute(
            text(
                "insert into ingest_sources (tenant_id, id, kind, name, state, last_import_at, "
                "last_event_at) values (:t, :id, :k, :n, cast(:s as jsonb), now(), :e) "
                "on conflict (tenant_id, kind, name) do update set "
                "state = case when :keep then ingest_sources.state else excluded.state end, "
                "last_import_at = excluded.last_import_at, "
                "last_event_at = greatest(ingest_sources.last_event_at, excluded.last_event_at)"
            ),
            {
                "t": self.tenant_id,
                "id": uuid.uuid4(),
                "k": self.spec.kind,
                "n": self.spec.source,
                "s": json.dumps(state if state is not None else {}),
                "e": last_event,
                "keep": state is None,
            },
        )

    async def close(self) -> None:
        """Release the file after a failure (finish() does it on success)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            # The reader is not thread-safe: let a read in flight end before closing it.
            with contextlib.suppress(Exception):
                await ahead
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)


async def import_file(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    spec: UploadSpec,
    path: Path,
    size: int,
    *,
    projects: frozenset[uuid.UUID] | None = None,
    batch_size: int = BATCH_SIZE,
    lock: bool = True,
) -> UploadResult:
    """A whole spooled file in the session's one transaction."""
    job = UploadImport(tenant_id, spec, projects=projects, batch_size=batch_size)
    await job.start(session, lock=lock)
    job.open(path, size)
    try:
        while await job.step(session):
            pass
        return await job.finish(session)
    finally:
        await job.close()


@asynccontextmanager
async def source_lock(
    engine: AsyncEngine, tenant_id: uuid.UUID, spec: UploadSpec
) -> AsyncIterator[None]:
    """Hold a source's import lock across many transactions (an import that commits per
    batch): a session-level advisory lock on a connection of its own, outside any
    transaction, so no idle-transaction timeout applies while the batches run."""
    if spec.source is None:
        yield
        return
    key = _lock_key(tenant_id, spec)
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = (
            await auto.execute(
                text("select pg_try_advisory_lock(hashtextextended(:k, 0))"), {"k": key}
            )
        ).scalar_one()
        if not got:
            raise ImportSourceBusy(
                f"An import of source {spec.source!r} is running; retry when it ends.",
                field="source",
            )
        try:
            yield
        finally:
            await auto.execute(
                text("select pg_advisory_unlock(hashtextextended(:k, 0))"), {"k": key}
            )
