"""Timestamps: RFC 3339 UTC text with millisecond precision, to and from epoch milliseconds.

The stored form is exactly ``YYYY-MM-DDTHH:MM:SS.mmmZ``; input may use ``Z`` or ``+00:00`` and
0-3 fractional digits. Dates are proleptic Gregorian, years 0001-9999, without leap seconds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_timestamp", "parse_stored_timestamp", "parse_timestamp"]

_DAYS_BEFORE_EPOCH = 719_468  # days from 0000-03-01 to 1970-01-01 (proleptic Gregorian)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (an era-based day count)."""
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - _DAYS_BEFORE_EPOCH


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) of a day count from :func:`_days_from_civil`."""
    era, day_of_era = divmod(days + _DAYS_BEFORE_EPOCH, 146_097)
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + (3 if shifted_month < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


# Batches share seconds and minutes, so both directions remember recent ones (bounded memos
# of pure functions).
_second_text: dict[int, str] = {}
_minute_ms: dict[str, int] = {}
_TIMESTAMP_MEMO_SIZE = 4_096


def format_timestamp(ms: int) -> str:
    """Milliseconds since the Unix epoch as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (years 1 to 9999)."""
    second, millis = divmod(ms, 1000)
    text = _second_text.get(second)
    if text is None:
        text = _format_second(second)
        if len(_second_text) >= _TIMESTAMP_MEMO_SIZE:
            _second_text.clear()
        _second_text[second] = text
    return f"{text}.{millis:03d}Z"


def _format_second(second: int) -> str:
    days, in_day = divmod(second, 86_400)
    year, month, day = _civil_from_days(days)
    if not 1 <= year <= 9999:
        raise ValueError(f"timestamp {second}s is outside years 1 to 9999")
    minutes, second = divmod(in_day, 60)
    hour, minute = divmod(minutes, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"


def parse_stored_timestamp(value: Any) -> int | None:
    """Milliseconds for a timestamp in the stored form ``YYYY-MM-DDTHH:MM:SS.mmmZ``, else None.

    The fast path for already normalized timestamps (and for leaves, which hold only these).
    """
    if type(value) is not str or len(value) != 24 or value[23] != "Z" or value[19] != ".":
        return None
    minute = _minute_ms.get(value[:16])
    if minute is None:
        try:
            minute = parse_timestamp(value[:16] + ":00Z")
        except ValueError:
            return None
        if len(_minute_ms) >= _TIMESTAMP_MEMO_SIZE:
            _minute_ms.clear()
        _minute_ms[value[:16]] = minute
    rest = value[17:19] + value[20:23]
    if value[16] != ":" or not (rest.isascii() and rest.isdigit()) or rest >= "60000":
        return None
    return minute + int(rest)


def parse_timestamp(text: str) -> int:
    """An RFC 3339 UTC timestamp as milliseconds since the Unix epoch.

    Accepts ``Z`` or ``+00:00`` and 0 to 3 fractional digits; anything else raises ``ValueError``.
    """
    if text.endswith("Z"):
        fraction = text[19:-1]
    elif text.endswith("+00:00"):
        fraction = text[19:-6]
    else:
        raise ValueError("must end in Z or +00:00 (UTC)")
    if not (text.isascii() and len(text) >= 20 and text[10] == "T"):
        raise ValueError("must look like YYYY-MM-DDTHH:MM:SS.mmmZ")
    if text[4] != "-" or text[7] != "-" or text[13] != ":" or text[16] != ":":
        raise ValueError("must look like YYYY-MM-DDTHH:MM:SS.mmmZ")
    return _date_ms(text) + _time_ms(text) + _fraction_ms(fraction)


def _date_ms(text: str) -> int:
    digits = text[0:4] + text[5:7] + text[8:10]
    if not digits.isdigit():
        raise ValueError("the date must be digits: YYYY-MM-DD")
    year, month, day = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= _month_days(year, month):
        raise ValueError("no such date")
    return _days_from_civil(year, month, day) * 86_400_000


def _time_ms(text: str) -> int:
    digits = text[11:13] + text[14:16] + text[17:19]
    if not digits.isdigit():
        raise ValueError("the time must be digits: HH:MM:SS")
    hour, minute, second = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("no such time of day")
    return ((hour * 60 + minute) * 60 + second) * 1000


def _fraction_ms(fraction: str) -> int:
    if not fraction:
        return 0
    digits = fraction[1:]
    if fraction[0] != "." or not digits.isdigit():
        raise ValueError("the fraction must be . followed by digits")
    if len(digits) > 3:
        raise ValueError("at most millisecond precision (3 fractional digits)")
    return int(digits.ljust(3, "0"))
