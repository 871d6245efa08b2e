"""The ``--dry-run`` of an import: what was detected (dialect, header mapping) and the first
rows, accepted or rejected."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any, Literal

from .customers import CustomerReader
from .reader import Source, _Reader
from .sales import SalesReader


@dataclass
class Preview:
    """What ``--dry-run`` shows: the detected dialect, the mapping and the first rows."""

    kind: str
    encoding: str
    delimiter: str
    header_line: int | None
    columns: list[dict[str, Any]]  # Mapping.describe()
    notes: list[str]
    rows: list[Any]  # SaleRow | CustomerRow | Rejection
    warnings: list[str]
    error: str | None
    total_bytes: int | None

    @property
    def mapping(self) -> dict[str, str]:
        """column header → field, for the mapped columns."""
        return {c["header"]: c["field"] for c in self.columns if c["field"]}


def preview(
    source: Source,
    n: int = 5,
    *,
    kind: Literal["sales", "customers"] = "sales",
    tenant: str = "preview",
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    default_zone: str = "Asia/Tokyo",
) -> Preview:
    """Detect, map and parse the first ``n`` data rows. Does not raise on a mapping problem:
    ``error`` holds the message (with the closest header) and ``columns`` what was found.
    Event ids are the ones a real import gives (the tenant is not part of them)."""
    if kind == "sales":
        reader: _Reader = SalesReader(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            default_zone=default_zone,
            raise_mapping=False,
        )
    else:
        reader = CustomerReader(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            raise_mapping=False,
        )
    with reader:
        rows = []
        for result in reader:
            rows.append(result)
            if len(rows) >= n:
                break
        if reader.mapping is not None:
            columns, notes = reader.mapping.describe(), list(reader.mapping.notes)
        else:
            headers = getattr(reader, "_header_cells", [])
            columns = [
                {"column": i + 1, "header": h, "field": None, "note": ""}
                for i, h in enumerate(headers)
            ]
            notes = []
        return Preview(
            kind=kind,
            encoding=reader.encoding,
            delimiter=reader.dialect.delimiter_name,
            header_line=reader.header_line,
            columns=columns,
            notes=notes,
            rows=rows,
            warnings=reader.warnings,
            error=str(reader.mapping_error) if reader.mapping_error else None,
            total_bytes=reader.total_bytes,
        )
