"""Reading the CSV files people really have into purchase events and customer rows.

CPM.md, "Where the data comes from": exports from customer, order and POS software and Excel,
first row a header, often tab-separated, often CP932, dates like ``2003/3/30``, amounts like
``105,607``. Pure: no network, no database, no clock. Streaming: one row in memory at a time
(plus a compact table of row digests, 8 bytes a row, for the event ids, and bounded caches of
parsed cells).

Fast enough for millions of rows in Python: lines are decoded a chunk of lines at a time, the
``csv`` module's C reader splits them, and since a file repeats its dates, amounts, branches
and products over and over, each distinct cell text is parsed once per column — its value,
formatted value or problem looked up afterwards (``CACHE_ENTRIES`` per column). The messages and
accepted forms are those of the parse functions in cells.py, whichever path a cell takes.

- dialect.py: :func:`detect` guesses encoding (UTF-8 with or without BOM, CP932, UTF-16 with
  BOM), the line ending and the delimiter (tab, comma, semicolon, pipe) from the first bytes.
- headers.py: :func:`map_headers` maps Japanese and English headers to fields;
  :class:`MappingError` names a missing field and the closest header.
- cells.py: parsing one cell (amounts, dates, consent).
- this module: physical lines and records, and the reader both kinds of file share.
- sales.py / customers.py: :func:`read_sales` / :func:`read_customers` return a reader: iterate
  it for :class:`SaleRow` / :class:`CustomerRow` or :class:`Rejection` (one result per data
  row, in file order, with the physical line number where the row starts, header = line 1).
- preview.py: :func:`preview` is the ``--dry-run``: what was detected and the first rows.

Event ids (``imp-<20 hex>-<n>``) are derived from the row's parsed content (branch, customer,
date and time, kind, amount, tax, order, currency, channel, line item) and ``n``, the
occurrence of that same content in the file (1 for the first). So importing the same file
twice gives the same ids, identical rows in one file get distinct ids (both count), and the ids
also survive what people do between two imports: fixing a rejected row, re-exporting a longer
period that overlaps the first, re-saving in another encoding or column order.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from .cells import _show
from .dialect import HEAD_BYTES, Dialect, detect
from .headers import (
    _INDEX,
    Mapping,
    MappingError,
    _header_keys,
    _parse_overrides,
    map_headers,
    normalize_header,
)

CHUNK_BYTES = 1 << 20
MAX_RECORD_LINES = 1000  # a quoted field spanning more lines is an unterminated quote
HEADER_SCAN = 20  # non-blank records searched for the header (title rows may come first)
Source = str | os.PathLike | IO[bytes]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A data row that was not imported. ``line`` is the physical line where the row starts
    (header = 1); ``column`` the header of the offending column (``None`` for the whole row);
    ``problems`` every (column, value, reason) found in the row, the first one repeated in
    ``column``/``value``/``reason``."""

    line: int
    column: str | None
    value: str | None
    reason: str
    problems: tuple[tuple[str | None, str | None, str], ...] = ()

    ok = False

    def __str__(self) -> str:
        parts = []
        for column, value, reason in self.problems or ((self.column, self.value, self.reason),):
            where = f"column {column}" if column else "row"
            shown = f" {_show(value)}" if value not in (None, "") else ""
            parts.append(f"{where}{shown}: {reason}")
        return f"line {self.line}: " + "; ".join(parts)


class _TooLong(Exception):
    pass


class _Lines:
    """The file's physical lines, decoded one at a time and numbered (header = 1). Splitting
    bytes on the newline byte is safe in UTF-8 and CP932 (0x0A/0x0D are never trail bytes);
    UTF-16 is transcoded to UTF-8 first. A line that does not decode is decoded with
    replacement characters and remembered in ``bad``. Lines of the record being read are kept
    in ``record`` so they can be pushed back and read again (unterminated quotes)."""

    def __init__(self, stream: IO[bytes], head: bytes, dialect: Dialect, offset: int = 0):
        self.stream = stream
        self.encoding = dialect.encoding
        self.codec = "utf-8" if dialect.encoding in ("utf-8-sig", "utf-16") else dialect.encoding
        self.tentative = not dialect.confident
        self.newline = dialect.newline
        self.consumed = len(head)  # raw bytes taken from the stream
        self.position = 0  # bytes up to the end of the last line read (not UTF-16)
        if dialect.encoding == "utf-8-sig" and head.startswith(codecs.BOM_UTF8):
            head = head[3:]
            self.position = 3
        self._runs = self._split(self._chunks(head))
        # the run of lines decoded and not yet read: first line's number, texts, positions
        self._first, self._texts, self._positions, self._at = 1, [], [], 0
        self.read = 0  # lines read from the file
        self.pushed: deque[tuple[int, str]] = deque()
        self.record: list[tuple[int, str]] = []
        self.bad: dict[int, str] = {}
        self.warnings: list[str] = []

    @property
    def bytes_read(self) -> int:
        if self.encoding == "utf-16":
            return self._positions[self._at - 1] if self._at else self.consumed
        return self.position

    def _chunks(self, head: bytes) -> Iterator[bytes]:
        if self.encoding == "utf-16":
            decoder = codecs.getincrementaldecoder("utf-16")("replace")
            data = head
            while data:
                yield decoder.decode(data).encode("utf-8")
                data = self.stream.read(CHUNK_BYTES)
                self.consumed += len(data)
            yield decoder.decode(b"", final=True).encode("utf-8")
            return
        if head:
            yield head
        while chunk := self.stream.read(CHUNK_BYTES):
            self.consumed += len(chunk)
            yield chunk

    def _split(self, chunks: Iterator[bytes]) -> Iterator[tuple[int, list[str], list[int]]]:
        """Runs of lines: (number of the first, their texts, the bytes read after each),
        decoded a chunk at a time: one decode call per chunk of lines rather than per line. A
        chunk that does not decode as a whole (a bad byte somewhere, or a first non-ASCII byte
        while the encoding is still a guess) is decoded line by line, which finds the bad lines
        and makes the guess."""
        nl = self.newline
        nl_text = nl.decode()
        step = len(nl)
        rest = b""
        position = self.position
        number = 1
        utf16 = self.encoding == "utf-16"
        for chunk in chunks:
            if rest:
                chunk = rest + chunk
            cut = chunk.rfind(nl) + step
            if cut < step:
                rest = chunk
                continue
            body, rest = chunk[:cut], chunk[cut:]
            parts = body.split(nl)
            parts.pop()  # after the last newline: nothing
            texts = None
            if not self.tentative or body.isascii():
                try:
                    texts = body.decode(self.codec).split(nl_text)
                except UnicodeDecodeError:
                    pass
            if texts is not None and len(texts) == len(parts) + 1:
                texts.pop()
                texts = [text + nl_text for text in texts]
            else:
                texts = [self._decode(part + nl, n) for n, part in enumerate(parts, start=number)]
            ends = list(accumulate((len(part) + step for part in parts), initial=position))
            position = ends[-1]
            del ends[0]
            yield number, texts, [self.consumed] * len(texts) if utf16 else ends
            number += len(texts)
        if rest:
            position += len(rest)
            yield number, [self._decode(rest, number)], [self.consumed if utf16 else position]

    def _fill(self) -> bool:
        """Whether a decoded line is waiting (decoding the next run when none is)."""
        while self._at >= len(self._texts):
            run = next(self._runs, None)
            if run is None:
                return False
            self._first, self._texts, self._positions = run
            self._at = 0
        return True

    def _next_line(self) -> tuple[int, str]:
        if not self._fill():
            raise StopIteration
        at = self._at
        self._at = at + 1
        self.read = self._first + at
        self.position = self._positions[at]
        return self.read, self._texts[at]

    def take(self, n: int) -> tuple[int, list[str], list[int]]:
        """Up to ``n`` lines as one run: (number of the first, texts, bytes read after each)."""
        first, texts, positions = self.read + 1, [], []
        while len(texts) < n and self._fill():
            at = self._at
            until = min(len(self._texts), at + n - len(texts))
            texts += self._texts[at:until]
            positions += self._positions[at:until]
            self._at = until
            self.read = self._first + until - 1
            self.position = self._positions[until - 1]
        return first, texts, positions

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        record = self.record
        if len(record) >= MAX_RECORD_LINES:
            raise _TooLong
        item = self.pushed.popleft() if self.pushed else self._next_line()
        record.append(item)
        return item[1]

    def _decode(self, raw: bytes, number: int) -> str:
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            if self.tentative:
                try:
                    text = raw.decode("cp932")
                except UnicodeDecodeError:
                    pass
                else:
                    self.codec = self.encoding = "cp932"
                    self.tentative = False
                    self.warnings.append(
                        f"line {number}: the first non-ASCII bytes are not UTF-8; "
                        "reading the file as CP932 (Shift_JIS)"
                    )
                    return text
            label = {"cp932": "CP932 (Shift_JIS)", "utf-8": "UTF-8"}.get(self.codec, self.codec)
            self.bad[number] = (
                f"bytes {raw[exc.start : exc.start + 4].hex(' ')} (byte {exc.start + 1} of the line) "
                f"are not valid {label}; is the file in one encoding?"
            )
            return raw.decode(self.codec, "replace")
        if self.tentative and not raw.isascii():
            self.tentative = False  # real UTF-8 seen
        return text

    def start_record(self) -> None:
        self.record = []

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self.pushed.extendleft(reversed(lines))


@dataclass(slots=True)
class _Record:
    start: int
    lines: list[tuple[int, str]]
    cells: list[str]
    error: str | None = None  # structural: csv error, unterminated quote


def _open(source: Source) -> tuple[IO[bytes], bool, int]:
    """(binary stream, whether we opened it, its start offset)."""
    if isinstance(source, str | os.PathLike):
        return open(source, "rb"), True, 0  # closed by the reader
    if isinstance(source, io.TextIOBase):
        raise TypeError("read_sales/read_customers need a binary stream (open the file with 'rb')")
    start = 0
    try:
        if source.seekable():
            start = source.tell()
    except (AttributeError, OSError):
        pass
    return source, False, start


def _size(stream: IO[bytes], start: int) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size - start
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, io.SEEK_END)
            stream.seek(here)
            return end - start
    except (AttributeError, OSError):
        pass
    return None


class _Occurrences:
    """How many times each 63-bit row digest was seen: an open-addressing table in an
    ``array('Q')`` (8 bytes a row at most 70 % full, ~16 MB per million rows, against ~70 MB
    for a Python set); counts above one in a dict (identical rows are rare)."""

    def __init__(self) -> None:
        self.slots = array("Q", bytes(8 * 1024))
        self.mask = 1023
        self.size = 0
        self.repeats: dict[int, int] = {}

    def add(self, key: int) -> int:
        slots, mask = self.slots, self.mask
        i = key & mask
        while True:
            v = slots[i]
            if v == 0:
                slots[i] = key
                self.size += 1
                if self.size * 10 > len(slots) * 7:
                    self._grow()
                return 1
            if v == key:
                n = self.repeats.get(key, 1) + 1
                self.repeats[key] = n
                return n
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self.slots
        self.slots = array("Q", bytes(16 * len(old)))
        self.mask = len(self.slots) - 1
        slots, mask = self.slots, self.mask
        for key in old:
            if key:
                i = key & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = key


class _Reader:
    kind: Literal["sales", "customers"]

    def __init__(
        self,
        source: Source,
        *,
        tenant: str,
        branch: str | None = None,
        mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        progress_every: int = 10_000,
        raise_mapping: bool = True,
    ):
        if not tenant:
            raise ValueError("tenant is required")
        self.tenant = tenant
        self.branch = branch.strip() if branch and branch.strip() else None
        self.on_progress = on_progress
        self.progress_every = max(1, progress_every)
        self.rows = 0  # data rows read (blank lines not counted)
        self.accepted = 0
        self.rejected = 0
        self.header_line: int | None = None
        self.mapping: Mapping | None = None
        self.mapping_error: MappingError | None = None
        self.closed = False
        self._stream, self._owned, start = _open(source)
        self._pending: list[_Record] = []
        self._bytes_at: int | None = None
        self._pushed_at: dict[int, int] = {}  # line → bytes read after it, for pushed-back lines
        try:
            head = self._stream.read(HEAD_BYTES)
            if isinstance(head, str):
                raise TypeError("read_sales/read_customers need a binary stream (open with 'rb')")
            self.total_bytes = _size(self._stream, start)
            self.dialect = detect(head)
            self._strict = replace(self.dialect, strict=True)
            self._lines = _Lines(self._stream, head, self.dialect)
            self._records = self._read_records()
            self._find_header(mapping_overrides)
        except MappingError as exc:
            if raise_mapping:
                self.close()
                raise
            self.mapping_error = exc
        except BaseException:
            self.close()
            raise
        self._results = self._run()

    # -- public ---------------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        """The encoding in use (may turn from ``utf-8`` to ``cp932`` after an ASCII start)."""
        return self._lines.encoding

    @property
    def bytes_read(self) -> int:
        """Bytes of the file read up to the last result given (a block is read ahead)."""
        return self._lines.bytes_read if self._bytes_at is None else self._bytes_at

    @property
    def line(self) -> int:
        """The last physical line read."""
        return self._lines.read

    @property
    def columns(self) -> list[str]:
        return self.mapping.headers if self.mapping else []

    @property
    def warnings(self) -> list[str]:
        return self._lines.warnings + self._warnings()

    def __iter__(self) -> _Reader:
        return self

    def __next__(self):
        return next(self._results)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._owned:
                self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records --------------------------------------------------------------------------

    def _read_records(self) -> Iterator[_Record]:
        lines = self._lines
        reader = csv.reader(lines, self.dialect)
        while True:
            lines.record = []  # lines.start_record(), inlined: once per row
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, _TooLong) as exc:
                record = lines.record
                reader = csv.reader(lines, self.dialect)
                if len(record) > 1:
                    lines.push_back(record[1:])
                    yield _Record(record[0][0], record[:1], [], _unterminated(record))
                elif record:
                    yield _Record(record[0][0], record, [], _csv_reason(exc))
                continue
            record = lines.record
            if record:
                yield _Record(record[0][0], record, cells)

    def _find_header(self, overrides) -> None:
        index = _INDEX[self.kind]
        overridden = {normalize_header(c) for c, _ in _parse_overrides(overrides)}
        seen: list[_Record] = []
        header: _Record | None = None
        for record in self._records:
            if _blank(record.cells):
                continue
            seen.append(record)
            keys = {k for cell in record.cells for k in _header_keys(cell)}
            if any(index.get(k, ("",))[0] == "customer_id" for k in keys) or keys & overridden:
                header = record
                break
            if len(seen) >= HEADER_SCAN:
                break
        if header is None:
            if not seen:
                raise MappingError("the file is empty: no header row")
            header, self._pending = seen[0], seen[1:]
        skipped = [r.start for r in seen if r.start < header.start]
        self._skipped_lines = skipped
        self.header_line = header.start
        names = [c.strip().replace("\ufeff", "") for c in header.cells]
        while names and not names[-1]:  # trailing delimiters on the header line
            names.pop()
        self._header_cells = names
        try:
            self.mapping = map_headers(
                names, self.kind, overrides, branch_given=self.branch is not None
            )
        except MappingError as exc:
            if any(n in self._lines.bad for n, _ in header.lines):
                exc.args = (
                    exc.args[0] + f" (the header line is not valid {self.encoding}: "
                    "is the file in another encoding?)",
                )
            raise
        self._prepare()

    def _run(self) -> Iterator[Any]:
        if self.mapping is None:
            self.close()
            return
        if self.block_rows:
            yield from self._run_blocks()
            return
        try:
            records = self._records
            while True:
                if self._pending:
                    record = self._pending.pop(0)
                else:
                    record = next(records, None)
                    if record is None:
                        break
                cells = record.cells
                if record.error is None and not (cells and cells[0].strip()) and _blank(cells):
                    continue
                self.rows += 1
                result = self._check(record)
                if result.ok:
                    self.accepted += 1
                else:
                    self.rejected += 1
                if self.on_progress and self.rows % self.progress_every == 0:
                    self.on_progress(self)
                yield result
            self._finish()
            if self.on_progress:
                self.on_progress(self)
        finally:
            self.close()

    # -- a block of rows at a time (sales: see _rows) ----------------------------------------

    block_rows = 0  # > 0: rows are parsed a block at a time by _rows

    def _run_blocks(self) -> Iterator[Any]:
        try:
            while True:
                block = self._plain_block()
                if block is None:
                    block = self._record_block()
                if block is None:
                    break
                lines, columns, positions, before = block
                results = self._rows(lines, columns) if lines else []
                for i, result in enumerate(_merged(results, before)):
                    self.rows += 1
                    if result.ok:
                        self.accepted += 1
                    else:
                        self.rejected += 1
                    self._bytes_at = positions[i]
                    if self.on_progress and self.rows % self.progress_every == 0:
                        self.on_progress(self)
                    yield result
            self._bytes_at = None
            self._finish()
            if self.on_progress:
                self.on_progress(self)
        finally:
            self.close()

    def _plain_block(self) -> _Block | None:
        """The next lines as a block when they are plain — one record a line, no quotes, no
        bad bytes, no blank rows, the header's number of cells each — split in C by Arrow;
        ``None`` (the lines pushed back for :meth:`_record_block`) otherwise."""
        lines = self._lines
        if self._pending or lines.pushed:
            return None
        first, texts, positions = lines.take(self.block_rows)
        if not texts:
            return None
        nl = lines.newline.decode()
        body = "".join(texts)
        numbers = range(first, first + len(texts))
        n = len(self._header_cells)
        plain = (
            self.dialect.quotechar not in body
            and (body.count("\r") == body.count("\r\n") if nl == "\n" else "\n" not in body)
            and "\x00" not in body
            and not (lines.bad and any(number in lines.bad for number in numbers))
        )
        if plain:
            ends = "\r\n" if nl == "\n" and body.endswith("\r\n") else nl
            cut = len(ends)
            if all(text.endswith(ends) for text in texts):
                array = pa.array([text[:-cut] for text in texts], pa.string())
            else:
                array = pa.array([text.rstrip("\r\n") for text in texts], pa.string())
            split = pc.split_pattern(array, self.dialect.delimiter)
            if pc.all(pc.equal(pc.list_value_length(split), n)).as_py():
                columns = [pc.list_element(split, i) for i in range(n)]
                if not _has_blank_row(columns):
                    return list(numbers), columns, positions, {}
        lines.push_back(list(zip(numbers, texts, strict=True)))
        self._pushed_at.update(zip(numbers, positions, strict=True))
        return None

    def _record_block(self) -> _Block | None:
        """Rows read record by record (quotes, rows spanning lines, bad bytes, blank rows): up
        to a block of them, stopping once the lines pushed back by :meth:`_plain_block` are
        read, so plain lines after them go the fast way again."""
        lines, numbers, cells, positions = self._lines, [], [], []
        before: dict[int, list[tuple[Any, int]]] = {}
        n = len(self._header_cells)
        records = self._records
        taken = 0
        while taken < self.block_rows:
            if self._pending:
                record = self._pending.pop(0)
            else:
                if not lines.pushed and taken and not self._pending:
                    break
                record = next(records, None)
                if record is None:
                    break
            row = record.cells
            if record.error is None and not (row and row[0].strip()) and _blank(row):
                continue
            taken += 1
            last = record.lines[-1][0]
            position = self._pushed_at.pop(last, None) or lines.bytes_read
            for number, _ in record.lines[:-1]:
                self._pushed_at.pop(number, None)
            result = self._cells(record)
            if isinstance(result, Rejection):
                before.setdefault(len(numbers), []).append((result, position))
                continue
            numbers.append(record.start)
            cells.append(result[:n])
            positions.append(position)
        if not taken:
            return None
        columns = [pa.array([row[i] for row in cells], pa.string()) for i in range(n)]
        order = []  # positions in file order, rejections before the rows they precede
        for i, position in enumerate(positions):
            order.extend(p for _, p in before.get(i, ()))
            order.append(position)
        order.extend(p for _, p in before.get(len(positions), ()))
        return numbers, columns, order, {i: [r for r, _ in rs] for i, rs in before.items()}

    def _check(self, record: _Record):
        result = self._cells(record)
        if isinstance(result, Rejection):
            return result
        return self._row(result, record.start)

    def _cells(self, record: _Record) -> list[str] | Rejection:
        """A record's cells, or the rejection of a record that is not a row of the table
        (broken quotes, the wrong number of columns, bytes not in the file's encoding)."""
        if record.error:
            return Rejection(record.start, None, _first_line(record), record.error)
        cells = record.cells
        n = len(self._header_cells)
        if len(record.lines) > 1 and self._fits(record.lines[1][1]) and self._malformed(record):
            # a quote opened on the first line swallowed the next rows: read them again
            self._lines.push_back(record.lines[1:])
            return Rejection(record.start, None, _first_line(record), _unterminated(record))
        if len(cells) != n:
            if len(cells) > n and not any(c.strip() for c in cells[n:]):
                cells = cells[:n]
            else:
                span = (
                    f" (the row spans lines {record.start}–{record.lines[-1][0]})"
                    if len(record.lines) > 1
                    else ""
                )
                return Rejection(
                    record.start,
                    None,
                    None,
                    f"wrong number of columns: {len(cells)}, the header has {n}{span}",
                )
        bad = self._lines.bad
        if bad:
            reasons = [bad.pop(number) for number, _ in record.lines if number in bad]
            if reasons:
                column = next(
                    (self._header_cells[i] for i, c in enumerate(cells) if "\ufffd" in c), None
                )
                return Rejection(record.start, column, None, reasons[0])
        return cells

    def _malformed(self, record: _Record) -> bool:
        """Whether a record's quotes are broken: a quote that closes a field but is followed by
        something other than a delimiter (the opening quote of a later field, when an
        unterminated quote swallowed the rows after it), or no closing quote at all."""
        try:
            for _ in csv.reader([text for _, text in record.lines], self._strict):
                pass
        except csv.Error:
            return True
        return False

    def _fits(self, line: str) -> bool:
        try:
            cells = next(csv.reader([line], self.dialect), [])
        except csv.Error:
            return False
        n = len(self._header_cells)
        return len(cells) == n or (len(cells) > n and not any(c.strip() for c in cells[n:]))

    def _problem(self, line, problems):
        column, value, reason = problems[0]
        return Rejection(line, column, value, reason, tuple(problems))

    # -- per kind ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        raise NotImplementedError

    def _row(self, cells: list[str], line: int):
        raise NotImplementedError

    def _rows(self, lines: list[int], columns: list[pa.Array]) -> list[Any]:
        """One result per row of a block (``block_rows`` > 0): ``columns`` holds the cells of
        every header column, ``lines`` each row's line."""
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    def _warnings(self) -> list[str]:
        out = []
        if getattr(self, "_skipped_lines", None):
            lines = self._skipped_lines
            out.append(
                f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))} before the "
                f"header (line {self.header_line}) skipped"
            )
        return out


def _blank(cells: list[str]) -> bool:
    return not any(c.strip() for c in cells)


# the characters str.strip() removes (str.isspace), for Arrow's regular expressions (RE2)
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK_RE = f"^[{_SPACE}]*$"


def _has_blank_row(columns: list[pa.Array]) -> bool:
    """Whether a row of the block is blank (every cell white space): such rows are skipped,
    not counted — the record reader does that."""
    maybe = pc.match_substring_regex(columns[0], _BLANK_RE)
    if not pc.any(maybe).as_py():
        return False
    rows = pc.indices_nonzero(maybe).to_pylist()
    picked = [pc.take(column, rows).to_pylist() for column in columns]
    return any(_blank(cells) for cells in zip(*picked, strict=True))


# (lines, columns, byte position after each result, rejections before the i-th row)
_Block = tuple[list[int], list[pa.Array], list[int], dict[int, list[Rejection]]]


def _merged(results: list[Any], before: dict[int, list[Rejection]]) -> Iterator[Any]:
    """The rows' results with the block's record rejections put back in file order."""
    if not before:
        yield from results
        return
    for i, result in enumerate(results):
        yield from before.get(i, ())
        yield result
    yield from before.get(len(results), ())


def _first_line(record: _Record) -> str:
    text = record.lines[0][1].rstrip("\r\n")
    return text if len(text) <= 80 else text[:79] + "…"


def _unterminated(record: list[tuple[int, str]] | _Record) -> str:
    lines = record.lines if isinstance(record, _Record) else record
    return (
        f'unterminated quote: a field opened with " on line {lines[0][0]} does not close '
        f"(the lines after it are read as rows of their own)"
    )


def _csv_reason(exc: BaseException) -> str:
    text = str(exc)
    if "new-line character" in text:
        return "a carriage return (CR) inside an unquoted field"
    if "field larger" in text:
        return "a field longer than 131,072 characters"
    return f"unreadable row: {text}"
