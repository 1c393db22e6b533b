"""GB 11643-1999 citizen identity numbers (ISO 7064 MOD 11-2 check character).

The same 18-character layout and check is used by Hong Kong/Macao/Taiwan residence permits
(prefixes 81/82/83) and the 2023 foreigner permanent residence card (prefix 9), so one check
covers every card a second-generation reader returns. Region codes are not checked against a
table (python-stdnum's ``cn.ric`` does, and rejects permit numbers). The 2017 foreigner permanent
residence card carries a 15-character number (3-letter nationality code + 12 digits) whose check
is not public: it is accepted on its format alone.
"""

from __future__ import annotations

import datetime as dt
import re

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
FOREIGN_PR_2017 = re.compile(r"[A-Z]{3}[0-9]{12}")


class InvalidIdNumber(ValueError):
    """An identity number that fails GB 11643; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_char(first17: str) -> str:
    """The check character for the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalise(raw: str) -> str:
    """Strip spaces and upper-case a trailing ``x``; no other change."""
    return raw.strip().replace(" ", "").upper()


def validate(raw: str) -> str:
    """Return the normalised number, or raise :class:`InvalidIdNumber` saying why."""
    number = normalise(raw)
    if FOREIGN_PR_2017.fullmatch(number):
        return number
    if len(number) == 15 and number.isdigit():
        raise InvalidIdNumber("old_15_digit", "15-digit first-generation numbers are not accepted")
    if len(number) != 18:
        raise InvalidIdNumber("length", f"expected 18 characters, got {len(number)}")
    body, check = number[:17], number[17]
    if not body.isascii() or not body.isdigit() or check not in "0123456789X":
        raise InvalidIdNumber("characters", "expected 17 digits and a digit or X")
    try:
        dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdNumber("birth_date", "digits 7-14 are not a calendar date") from None  # no personal data
    expected = check_char(body)
    if check != expected:
        raise InvalidIdNumber("check_digit", f"check character is {check}, expected {expected}")
    return number


def is_valid(raw: str) -> bool:
    """True when :func:`validate` accepts ``raw``."""
    try:
        validate(raw)
    except InvalidIdNumber:
        return False
    return True


def make(first17: str) -> str:
    """Complete 17 digits with their check character (used by the simulator and tests)."""
    return first17 + check_char(first17)
