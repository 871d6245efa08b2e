"""How a file is written: its encoding (UTF-8 with or without BOM, CP932, UTF-16 with BOM),
line ending and delimiter (tab, comma, semicolon, pipe), guessed from the first bytes."""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass

HEAD_BYTES = 64 * 1024  # what detect() looks at


@dataclass(frozen=True, slots=True)
class Dialect:
    """What :func:`detect` found. Usable as a :mod:`csv` dialect (``csv.reader(lines, d)``).
    ``confident`` is ``False`` when the sample was plain ASCII: UTF-8 is assumed and the reader
    switches to CP932 if the first non-ASCII line is not UTF-8."""

    encoding: str  # "utf-8-sig" | "utf-8" | "cp932" | "utf-16"
    delimiter: str  # "\t" | "," | ";" | "|"
    newline: bytes = b"\n"  # b"\r" for old Mac files
    confident: bool = True
    quotechar: str = '"'
    escapechar: str | None = None
    doublequote: bool = True
    skipinitialspace: bool = False
    lineterminator: str = "\r\n"
    quoting: int = csv.QUOTE_MINIMAL
    strict: bool = False

    @property
    def delimiter_name(self) -> str:
        return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[self.delimiter]


_DELIMITERS = ("\t", ",", ";", "|")  # ties go to the first


def detect(raw_head: bytes) -> Dialect:
    """Guess encoding, line ending and delimiter from the first bytes of a file.

    Encoding: a BOM decides (UTF-8, UTF-16); else UTF-8 if the sample decodes (a cut
    multi-byte character at the end is fine, and so are a few bad bytes among many valid
    UTF-8 characters), else CP932 (the Windows superset of Shift_JIS).
    Delimiter: the candidate that splits the first line with more than one field into the most
    fields (the header: amounts like ``105,607`` in data rows do not confuse it)."""
    confident = True
    if raw_head.startswith(codecs.BOM_UTF8):
        encoding, text = "utf-8-sig", _decode_head(raw_head[3:], "utf-8", "replace")
    elif raw_head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, text = "utf-16", _decode_head(raw_head, "utf-16", "replace")
    else:
        try:
            text = _decode_head(raw_head, "utf-8", "strict")
            encoding, confident = "utf-8", not raw_head.isascii()
        except UnicodeDecodeError:
            # a UTF-8 file with a stray bad byte is still UTF-8: CP932 text is almost never
            # valid UTF-8, so compare the valid non-ASCII characters with the invalid bytes
            text = _decode_head(raw_head, "utf-8", "replace")
            bad = text.count("\ufffd")
            good = sum(1 for ch in text if ch > "\x7f") - bad
            if good < 10 * bad:
                encoding, text = "cp932", _decode_head(raw_head, "cp932", "replace")
            else:
                encoding = "utf-8"
    if "\n" in text:
        newline = b"\n"
    elif "\r" in text:
        newline = b"\r"
    else:
        newline = b"\n"
    delimiter = ","
    for line in text.split(newline.decode())[:50]:
        if not line.strip():
            continue
        counts = {d: len(next(csv.reader([line], delimiter=d), [])) for d in _DELIMITERS}
        best = max(_DELIMITERS, key=lambda d: counts[d])  # max keeps the first on ties
        if counts[best] > 1:
            delimiter = best
            break
    return Dialect(encoding=encoding, delimiter=delimiter, newline=newline, confident=confident)


def _decode_head(raw: bytes, encoding: str, errors: str) -> str:
    return codecs.getincrementaldecoder(encoding)(errors).decode(raw, final=False)
