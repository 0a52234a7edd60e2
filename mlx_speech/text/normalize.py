"""English text normalisation: abbreviations, currency, dates, times, ordinals, numbers.

``normalize_en("Dr. Smith paid $3.50 on 2024-01-15.")`` ->
``"Doctor Smith paid three dollars and fifty cents on January fifteenth, twenty twenty-four."``

Rules run in a fixed order (dates before plain numbers, currency before decimals); each is a
regular expression with a small function, so a new case is one rule and one test.
"""

from __future__ import annotations

import re
import unicodedata

from mlx_speech.text.numbers import cardinal, decimal, digits, ordinal, year

MONTHS = ("January February March April May June July August September October November "
          "December").split()
_MONTH_ABBR = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}

_ABBREVIATIONS = {
    "mr": "Mister", "mrs": "Missus", "ms": "Miz", "dr": "Doctor", "prof": "Professor",
    "jr": "Junior", "sr": "Senior", "mt": "Mount", "vs": "versus", "etc": "et cetera",
    "approx": "approximately", "dept": "department", "est": "established", "ave": "Avenue",
    "rd": "Road", "co": "Company", "corp": "Corporation", "inc": "Incorporated", "ltd": "Limited",
    "gen": "General", "gov": "Governor", "capt": "Captain", "sgt": "Sergeant", "lt": "Lieutenant",
}
_UNITS = {"km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters",
          "m": "meters", "g": "grams", "mph": "miles per hour", "kmh": "kilometers per hour",
          "ml": "milliliters", "l": "liters", "h": "hours", "min": "minutes", "s": "seconds"}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents"), "₹": ("rupee", "rupees", "paisa", "paise"),
             "¥": ("yen", "yen", "sen", "sen")}
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "%": " percent ",
            "#": " number ", "°": " degrees ", "×": " times ", "/": " slash "}
_SCALE_WORDS = "thousand|million|billion|trillion"
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)"  # 1,234,567 or 1234567 (a trailing comma is punctuation)


def _plural(n: str, one: str, many: str) -> str:
    return one if n.lstrip("0") == "1" else many


def _currency(m: re.Match) -> str:
    sym, whole, frac, scale = m.group(1), m.group(2).replace(",", ""), m.group(3), m.group(4)
    one, many, sub_one, sub_many = _CURRENCY[sym]
    if scale:  # "$1.5 million" -> "one point five million dollars"
        return f"{decimal(whole + ('.' + frac if frac else ''))} {scale} {many}"
    parts = []
    if int(whole or "0") or not frac or not int(frac):
        parts.append(f"{cardinal(int(whole or '0'))} {_plural(whole or '0', one, many)}")
    if frac and int(frac):
        cents = frac.ljust(2, "0")[:2]
        parts.append(f"{cardinal(int(cents))} {_plural(cents, sub_one, sub_many)}")
    return " and ".join(parts)


def _date_iso(m: re.Match) -> str:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0).replace("-", " ")
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


def _date_us(m: re.Match) -> str:
    mo, d, y = int(m.group(1)), int(m.group(2)), m.group(3)
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0).replace("/", " slash ")
    yy = int(y) + (2000 if len(y) == 2 and int(y) < 50 else 1900 if len(y) == 2 else 0)
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(yy)}"


def _month_day(m: re.Match) -> str:
    month = _MONTH_ABBR[m.group(1).lower()[:4].rstrip(".")] if m.group(1).lower()[:4] == "sept" \
        else _MONTH_ABBR[m.group(1).lower()[:3]]
    out = f"{month} {ordinal(int(m.group(2)))}"
    return out + (f", {year(int(m.group(3)))}" if m.group(3) else "")


def _day_month(m: re.Match) -> str:
    month = _MONTH_ABBR[m.group(2).lower()[:3]]
    out = f"the {ordinal(int(m.group(1)))} of {month}"
    return out + (f", {year(int(m.group(3)))}" if m.group(3) else "")


def _time(m: re.Match) -> str:
    h, mi, ampm = int(m.group(1)), int(m.group(2)), m.group(3)
    if h > 23 or mi > 59:
        return f"{cardinal(h)} {cardinal(mi)}"
    words = cardinal(h)
    if mi == 0:
        words += "" if ampm else " o'clock"
    elif mi < 10:
        words += " oh " + cardinal(mi)
    else:
        words += " " + cardinal(mi)
    if ampm:
        words += " " + " ".join(ampm.lower().replace(".", ""))
    return words


def _number(m: re.Match) -> str:
    text = m.group(0)
    if "." in text:
        return decimal(text)
    plain = text.replace(",", "")
    if "," not in text and len(plain) == 4 and 1100 <= int(plain) <= 2099:
        return year(int(plain))
    if len(plain) > 1 and plain.startswith("0"):
        return digits(plain)
    return cardinal(int(plain))


def _abbrev(m: re.Match) -> str:
    word = m.group(1)
    return _ABBREVIATIONS[word.lower()]


def _st(m: re.Match) -> str:  # "St. Paul" -> Saint, "Main St." -> Street
    if m.group(1):
        return "Saint "
    return "Street." if m.end() == len(m.string) else "Street"


_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), _date_iso),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"), _date_us),
    (re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?"
                r"\b(?:,?\s+(\d{4})\b)?"), _month_day),
    (re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
                r"(?:,?\s+(\d{4})\b)?"), _day_month),
    (re.compile(r"\b(\d{1,2}):(\d{2})\s*([AaPp]\.?[Mm]\.?)?(?![\w:])"), _time),
    (re.compile(r"([$£€₹¥])\s?(" + _NUM + r")(?:\.(\d+))?(?:\s+(" + _SCALE_WORDS + r"))?\b"), _currency),
    (re.compile(r"(\d+(?:\.\d+)?)\s?%"), lambda m: f"{_number(re.match(r'.*', m.group(1)))} percent"),
    (re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I), lambda m: ordinal(int(m.group(1)))),
    (re.compile(r"\b[Nn]o\.\s?(?=\d)"), lambda m: "number "),
    (re.compile(r"\bSt\.(\s+(?=[A-Z]))?"), _st),
    (re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.I), _abbrev),
    (re.compile(r"\be\.g\.", re.I), lambda m: "for example"),
    (re.compile(r"\bi\.e\.", re.I), lambda m: "that is"),
    (re.compile(r"\b(\d+(?:\.\d+)?)\s?(" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")\b"),
     lambda m: f"{_number(re.match(r'.*', m.group(1)))} {_UNITS[m.group(2)]}"),
    (re.compile(r"(?<![\d.])-(?=\d)"), lambda m: "minus "),
    (re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])"), lambda m: " "),  # "MP3" -> "MP 3"
    (re.compile(_NUM + r"(?:\.\d+)?"), _number),
]


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    for a, b in (("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'),
                 ("\u2013", " - "), ("\u2014", " - "), ("\u2026", "...")):
        text = text.replace(a, b)
    return text


def normalize_en(text: str) -> str:
    """Expand the written forms of English into words; whitespace collapsed."""
    text = _clean(text)
    for pattern, fn in _RULES:
        text = pattern.sub(fn, text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    return re.sub(r"\s+", " ", text).strip()
