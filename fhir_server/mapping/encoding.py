"""Text encoding detection for legacy exports: UTF-8 (with or without BOM) or TIS-620/cp874.

Thai systems still write TIS-620 (Windows code page 874 is its superset). A byte string that decodes as
strict UTF-8 is UTF-8: Thai TIS-620 text uses bytes 0xA1-0xFB, which almost never form valid UTF-8
sequences, so the test is reliable for real Thai text.
"""

from __future__ import annotations

import codecs

UTF8 = "utf-8"
UTF8_SIG = "utf-8-sig"
CP874 = "cp874"


def detect_encoding(data: bytes) -> str:
    """The codec name to read ``data`` with: ``utf-8-sig``, ``utf-8`` or ``cp874``."""
    if data.startswith(codecs.BOM_UTF8):
        return UTF8_SIG
    try:
        data.decode(UTF8)
    except UnicodeDecodeError:
        return CP874
    return UTF8


def decode(data: bytes) -> tuple[str, str]:
    """Decode ``data`` with the detected encoding; returns ``(text, encoding)``.

    cp874 leaves a few bytes undefined; they become U+FFFD rather than failing the whole file, and the
    rows holding them then fail their own checks with a precise reason.
    """
    encoding = detect_encoding(data)
    return data.decode(encoding, errors="strict" if encoding != CP874 else "replace"), encoding
