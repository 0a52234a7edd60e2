"""English number words: cardinals, ordinals, years, decimals (no external packages)."""

from __future__ import annotations

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORD_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _below_1000(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return words


def cardinal(n: int) -> str:
    """``1234`` -> ``"one thousand two hundred thirty-four"``; negatives get ``minus``."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 10**15:  # read very long numbers digit by digit
        return " ".join(_ONES[int(d)] for d in str(n))
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_1000(n // value) + [name]
            n %= value
    if n or not words:
        words += _below_1000(n)
    return " ".join(words)


def ordinal(n: int) -> str:
    """``21`` -> ``"twenty-first"``."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    pre, dash, unit = last.rpartition("-")
    if unit in _ORD_IRREGULAR:
        unit = _ORD_IRREGULAR[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + pre + dash + unit


def year(n: int) -> str:
    """Years as spoken: 1984 -> nineteen eighty-four, 2005 -> two thousand five, 1900 -> nineteen hundred."""
    if 2000 <= n <= 2009 or n < 1000 or n > 9999:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return cardinal(hi) + " hundred"
    return cardinal(hi) + " " + ("oh " + _ONES[lo] if lo < 10 else cardinal(lo))


def decimal(text: str) -> str:
    """``"3.14"`` -> ``"three point one four"`` (integer part as a cardinal, then digits)."""
    whole, _, frac = text.partition(".")
    head = cardinal(int(whole.replace(",", "") or "0"))
    return head + (" point " + " ".join(_ONES[int(d)] for d in frac) if frac else "")


def digits(text: str) -> str:
    """Read a digit string digit by digit (phone numbers, codes)."""
    return " ".join(_ONES[int(d)] for d in text if d.isdigit())
