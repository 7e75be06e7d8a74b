"""Retrieval evaluation sets: a split's images, its caption gallery and its text queries.

A split is read from COCO captions (``captions_{sub}.json``) or the JSONL layout through
:func:`kgmm.data.load_retrieval`. On top of the records:

* **text→image queries** come from ``retrieval/{sub}_queries.json`` when the folder has one
  (the OpenMoji-scenes layout: ``{"queries": [{query_id, text, level, entity_id,
  relevant_image_ids}]}``); otherwise every caption is a query whose one relevant image is its
  own (the usual COCO protocol), with level ``"caption"``.
* **image→text**: the gallery is the split's *distinct* caption texts (after whitespace and
  case folding) of one level; an image's relevant texts are its own captions of that level.
  Levels come from the image entry's ``caption_levels`` (parallel to its captions) when
  present, else every caption has level ``"caption"``. Identical caption texts of different
  images are one gallery item relevant to all of them, so ties between duplicates cannot
  decide a metric.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgmm.data import load_retrieval
from kgmm.data.records import RecordId
from kgmm.graph.errors import InputError

DEFAULT_LEVEL = "caption"

_SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015"}


def normalize_text(text: str) -> str:
    """Case- and whitespace-folded text (the key of a gallery caption)."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class TextQuery:
    """A text→image query: its text, level and the ids of its relevant images."""

    query_id: RecordId
    text: str
    level: str
    relevant: frozenset[RecordId]
    entity_id: str | None = None


@dataclass
class RetrievalSplit:
    """One split ready for retrieval: images, text queries, caption galleries per level.

    Attributes:
        image_ids / image_paths: the split's images in file order.
        captions: per image, its ``(caption, level)`` pairs.
        queries: text→image queries.
    """

    root: Path
    split: str
    image_ids: list[RecordId]
    image_paths: list[Path | None]
    captions: list[list[tuple[str, str]]]
    queries: list[TextQuery]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> list[str]:
        """Query levels of the split (text→image), in first-seen order."""
        return list(dict.fromkeys(q.level for q in self.queries))

    @property
    def caption_levels(self) -> list[str]:
        """Caption levels (image→text galleries), in first-seen order."""
        return list(dict.fromkeys(lv for caps in self.captions for _, lv in caps))

    def all_captions(self) -> list[tuple[int, str]]:
        """Every ``(image position, caption)`` pair, in file order."""
        return [(i, c) for i, caps in enumerate(self.captions) for c, _ in caps]

    def gallery(self, level: str) -> tuple[list[str], list[set[int]]]:
        """Distinct caption texts of ``level`` and, per image position, the relevant ones."""
        texts: list[str] = []
        index: dict[str, int] = {}
        relevant: list[set[int]] = [set() for _ in self.image_ids]
        for i, caps in enumerate(self.captions):
            for caption, lv in caps:
                if lv != level:
                    continue
                key = normalize_text(caption)
                if key not in index:
                    index[key] = len(texts)
                    texts.append(caption)
                relevant[i].add(index[key])
        return texts, relevant


def split_file_stem(root: Path, split: str) -> str:
    """The data subtype used in file names (``test`` → ``test2015``), from the benchmark's
    manifest when there is one."""
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
            captions = files.get(split, {}).get("captions", "")
            if captions:
                return Path(captions).stem.removeprefix("captions_")
        except (json.JSONDecodeError, AttributeError):
            pass
    return _SUBTYPES.get(split, split)


def load_queries(path: Path, image_ids: set[RecordId]) -> list[TextQuery]:
    """Read a ``{sub}_queries.json`` file; every malformed entry is an :class:`InputError`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", source=path, line=exc.lineno) from None
    entries = data.get("queries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError("expected an object with a 'queries' array", source=path)
    queries = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError("expected an object", source=path, record=f"queries[{k}]")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError("expected a non-empty string", source=path,
                             record=f"queries[{k}]", field="text")
        relevant = entry.get("relevant_image_ids")
        if not isinstance(relevant, list):
            raise InputError("expected an array of image ids", source=path,
                             record=f"queries[{k}]", field="relevant_image_ids")
        unknown = [r for r in relevant if r not in image_ids]
        if unknown:
            raise InputError(f"image {unknown[0]!r} is not an image of the split", source=path,
                             record=f"queries[{k}]", field="relevant_image_ids")
        queries.append(TextQuery(entry.get("query_id", k), text, str(entry.get("level",
                                 DEFAULT_LEVEL)), frozenset(relevant), entry.get("entity_id")))
    return queries


def load_retrieval_split(root: str | os.PathLike[str], split: str) -> RetrievalSplit:
    """Read split ``split`` of the retrieval set at ``root`` (see the module docstring).

    Raises:
        SourceNotFoundError: no captions for the split.
        InputError: a malformed captions or queries file.
    """
    root = Path(root)
    dataset = load_retrieval(root, split)
    ids = [r.image_id for r in dataset]
    captions: list[list[tuple[str, str]]] = []
    for record in dataset:
        levels = record.extra.get("caption_levels")
        if not (isinstance(levels, list) and len(levels) == len(record.captions)):
            levels = [DEFAULT_LEVEL] * len(record.captions)
        captions.append([(c, str(lv)) for c, lv in zip(record.captions, levels, strict=True)])
    query_file = root / "retrieval" / f"{split_file_stem(root, split)}_queries.json"
    if query_file.is_file():
        queries = load_queries(query_file, set(ids))
    else:
        by_text: dict[str, set[RecordId]] = defaultdict(set)
        first: dict[str, str] = {}
        for image_id, caps in zip(ids, captions, strict=True):
            for caption, _ in caps:
                key = normalize_text(caption)
                by_text[key].add(image_id)
                first.setdefault(key, caption)
        queries = [TextQuery(k, first[key], DEFAULT_LEVEL, frozenset(rel))
                   for k, (key, rel) in enumerate(by_text.items())]
    return RetrievalSplit(root, split, ids, [r.image_path for r in dataset], captions, queries,
                          {"missing_images": list(dataset.missing_images)})
