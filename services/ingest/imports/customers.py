"""Reading a customer file: each data row a :class:`CustomerRow` (master data: name, kana,
address, contact, mail consent) or a :class:`~.reader.Rejection`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import asdict, dataclass
from typing import Any

from .cells import _clean, _code, _nfkc, parse_consent
from .reader import Source, _Reader


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """An accepted customer row (text fields NFKC-normalised, ``None`` when empty)."""

    line: int
    tenant_id: str
    customer_id: str
    branch_id: str | None = None
    name: str | None = None
    kana: str | None = None
    company: str | None = None
    postal_code: str | None = None
    address1: str | None = None
    address2: str | None = None
    phone: str | None = None
    fax: str | None = None
    email: str | None = None
    mail_consent: bool | None = None

    ok = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["line"]
        return d


class CustomerReader(_Reader):
    """Iterate for :class:`CustomerRow` or :class:`Rejection`; same progress attributes as
    :class:`SalesReader`."""

    kind = "customers"

    def _prepare(self) -> None:
        assert self.mapping is not None
        self._idx = dict(self.mapping.fields)
        self._col = {name: self.mapping.headers[i] for name, i in self._idx.items()}

    def _row(self, cells: list[str], line: int):
        idx, col = self._idx, self._col
        problems: list[tuple[str | None, str | None, str]] = []

        def get(name: str) -> str | None:
            i = idx.get(name)
            if i is None:
                return None
            s = _nfkc(_clean(cells[i]))
            return " ".join(s.split()) or None  # NFKC'd ideographic spaces included

        customer = _code(cells[idx["customer_id"]])
        if not customer:
            problems.append((col["customer_id"], "", "missing customer code (顧客コード)"))
        elif len(customer) > 200:
            problems.append((col["customer_id"], customer, "customer code longer than 200"))
        consent = None
        if "mail_consent" in idx:
            raw = _clean(cells[idx["mail_consent"]])
            try:
                consent = parse_consent(raw)
            except ValueError as exc:
                problems.append((col["mail_consent"], raw, str(exc)))
        if problems:
            return self._problem(line, problems)
        name = get("name") or _join(get("family_name"), get("given_name"))
        kana = get("kana") or _join(get("family_kana"), get("given_kana"))
        address1 = _join(get("prefecture"), get("city"), get("address1"), sep="")
        pref = get("prefecture")
        if pref and get("address1") and get("address1").startswith(pref):  # 住所 already has it
            address1 = _join(get("city"), get("address1"), sep="")
        postal = get("postal_code")
        if postal:
            postal = postal.lstrip("〒").strip()
            digits = postal.replace("-", "")
            if len(digits) == 7 and digits.isdigit():
                postal = f"{digits[:3]}-{digits[3:]}"
        branch = (_code(cells[idx["branch"]]) if "branch" in idx else "") or self.branch
        return CustomerRow(
            line=line,
            tenant_id=self.tenant,
            customer_id=customer,
            branch_id=branch,
            name=name,
            kana=kana,
            company=get("company"),
            postal_code=postal,
            address1=address1,
            address2=_join(get("address2"), get("address3")),
            phone=get("phone"),
            fax=get("fax"),
            email=get("email"),
            mail_consent=consent,
        )


def _join(*parts: str | None, sep: str = " ") -> str | None:
    return sep.join(p for p in parts if p) or None


def read_customers(
    source: Source,
    *,
    tenant: str,
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    on_progress: Callable[[CustomerReader], None] | None = None,
    progress_every: int = 10_000,
) -> CustomerReader:
    """Open a customer file; iterate the result for :class:`CustomerRow` or :class:`Rejection`.
    Only the customer code is required. Text is NFKC-normalised (half-width kana become
    full-width), postal codes written ``123-4567``, 都道府県/市区町村 columns joined into
    address1, 姓/名 into name; a second ``氏名`` column is read as kana when there is no kana
    column (as in the common export where both are headed 氏名)."""
    return CustomerReader(
        source,
        tenant=tenant,
        branch=branch,
        mapping_overrides=mapping_overrides,
        on_progress=on_progress,
        progress_every=progress_every,
    )
