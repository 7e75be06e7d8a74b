"""Lexical lookup helpers: the normal form of labels and aliases, and plural folding.

The compiled KG keeps a sorted array of normal forms so that a label or alias lookup is a
binary search; these functions define what "the same name" means.
"""

from __future__ import annotations

import re
import string
import unicodedata

_DROP = re.compile(r"[^\w' ]+")
#: ASCII punctuation (all but the apostrophe) and the separators ``_ - /`` become spaces.
_ASCII_TABLE = str.maketrans({c: " " for c in string.punctuation.replace("'", "")})


def normalize_label(text: str) -> str:
    """Fold a name to its lookup key: NFKC, casefold, punctuation and ``_ - /`` as spaces.

    >>> normalize_label("Egyptian_Cat")
    'egyptian cat'
    >>> normalize_label("  T-shirt! ")
    't shirt'
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = text.casefold().translate(_ASCII_TABLE)
    if not text.isascii():
        text = _DROP.sub(" ", text.replace("_", " "))
    return " ".join(text.split())


_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "teeth": "tooth", "feet": "foot", "oxen": "ox", "dice": "die",
    "knives": "knife", "wives": "wife", "leaves": "leaf", "wolves": "wolf", "lives": "life",
    "loaves": "loaf", "halves": "half", "calves": "calf", "shelves": "shelf", "thieves": "thief",
}


def singular_forms(key: str) -> list[str]:
    """Candidate singulars of a normalised name (last word only), most likely first.

    English plural rules: ``-ies → -y``, ``-ves → -f/-fe``, ``-es → ''``, ``-s → ''`` and a
    table of irregular plurals. Returns [] when no rule applies.
    """
    head, _, last = key.rpartition(" ")
    prefix = head + " " if head else ""
    out: list[str] = []
    if last in _IRREGULAR_PLURALS:
        out.append(_IRREGULAR_PLURALS[last])
    if len(last) > 3 and last.endswith("ies"):
        out.append(last[:-3] + "y")
    if len(last) > 3 and last.endswith("ves"):
        out.extend([last[:-3] + "f", last[:-3] + "fe"])
    if len(last) > 3 and last.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        out.append(last[:-2])
    if len(last) > 2 and last.endswith("s") and not last.endswith("ss"):
        out.append(last[:-1])
    return [prefix + form for form in dict.fromkeys(out)]
