"""Knowledge sources: readers that turn files into :class:`~kgmm.graph.model.GraphData`.

* :func:`read_rdf` / :func:`write_rdf` — Turtle, N-Triples, JSON-LD, N3, RDF/XML (rdflib).
* :func:`read_conceptnet` — ConceptNet 5 assertions CSV (plain or gzipped), streamed.
* :func:`read_tsv` — ``subject<TAB>relation<TAB>object`` triples plus optional entity metadata.
* :func:`read_source` — picks one of the above (or the WordNet reader) by kind or by file.

Importing this package loads neither rdflib nor the WordNet reader; they load on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError, SourceNotFoundError
from ..model import GraphData
from .conceptnet import read_conceptnet
from .rdf import read_rdf, write_rdf
from .tsv import iter_lines, read_tsv

__all__ = ["SOURCE_KINDS", "detect_kind", "read_conceptnet", "read_rdf", "read_source",
           "read_tsv", "write_rdf"]

#: The kinds :func:`read_source` understands.
SOURCE_KINDS = ("rdf", "conceptnet", "tsv", "wordnet")

_RDF_SUFFIXES = frozenset({".ttl", ".turtle", ".nt", ".jsonld", ".json", ".n3", ".rdf", ".xml",
                           ".owl"})
_TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
_WORDNET_MARKERS = ("data.noun", "index.noun")


def read_source(
    path: str | os.PathLike[str] | None,
    kind: str | None = None,
    **options: Any,
) -> GraphData:
    """Read a knowledge source of the given kind, or of the kind its path suggests.

    Args:
        path: a file, or a WordNet database directory (or one holding ``dict/``). ``None``
            is allowed for ``kind="wordnet"`` only: ``find_wordnet`` then looks in the usual
            places (it takes the ``data_dir``, ``allow_npm`` and ``on_progress`` options).
        kind: ``"rdf"``, ``"conceptnet"``, ``"tsv"`` or ``"wordnet"``; ``None`` guesses with
            :func:`detect_kind`.
        options: passed to the reader (``format=``, ``languages=``, ``entities_path=`` …).
    """
    if kind is None:
        if path is None:
            raise InputError("no path given; pass a path or kind='wordnet'")
        kind = detect_kind(path)
    if kind == "wordnet":
        return _read_wordnet(path, options)
    if path is None:
        raise InputError(f"a {kind} source needs a path")
    readers = {"rdf": read_rdf, "conceptnet": read_conceptnet, "tsv": read_tsv}
    if kind not in readers:
        raise InputError(f"unknown source kind {kind!r}; use one of {list(SOURCE_KINDS)}",
                         source=path)
    return readers[kind](path, **options)


def detect_kind(path: str | os.PathLike[str]) -> str:
    """Guess a source's kind from its shape.

    A directory holding ``data.noun``/``index.noun`` (directly or in ``dict/``) is WordNet;
    RDF suffixes (``.ttl .nt .jsonld .json .n3 .rdf .xml .owl``, optionally ``.gz``) are RDF;
    ``.csv``/``.tsv``/``.txt`` files are ConceptNet when their first data line has five
    tab-separated columns starting with ``/a/``, else TSV triples.
    """
    path = Path(path)
    if path.is_dir():
        if any((path / sub / name).is_file() for sub in (".", "dict") for name in _WORDNET_MARKERS):
            return "wordnet"
        raise InputError("directory is not a WordNet database (no data.noun or index.noun)",
                         source=path)
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file or directory")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _RDF_SUFFIXES:
        return "rdf"
    if suffix in _TEXT_SUFFIXES:
        return "conceptnet" if _looks_like_conceptnet(path) else "tsv"
    raise InputError("cannot tell the kind of source from the name; pass kind= (one of "
                     f"{list(SOURCE_KINDS)})", source=path)


def _looks_like_conceptnet(path: Path) -> bool:
    """Whether the first data line is a five-column ConceptNet assertion."""
    for _, text in iter_lines(path):
        if not text.strip() or text.startswith("#"):
            continue
        columns = text.split("\t")
        return len(columns) == 5 and columns[0].startswith("/a/")
    return False


def _read_wordnet(path: str | os.PathLike[str] | None, options: dict[str, Any]) -> GraphData:
    """Locate the database with ``find_wordnet`` and read it, importing both only now."""
    from .fetch import find_wordnet
    from .wordnet import read_wordnet

    finder = {key: options.pop(key) for key in ("data_dir", "allow_npm", "on_progress")
              if key in options}
    return read_wordnet(find_wordnet(path, **finder), **options)
