"""The records every dataset reader yields, and the dataset object the readers return.

A record is plain data: paths, strings and ids. Readers never open images or build tensors;
batching and image loading belong to later stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

#: A question or image id as the source spells it: COCO-based sets use ints, FVQA strings.
RecordId = int | str


def _as_str_tuple(value: Iterable[str] | str, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of strings, not a single string")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold strings, got {type(item).__name__}")
    return items


@dataclass(frozen=True, slots=True)
class VQARecord:
    """One visual question with its ground truth.

    Attributes:
        question_id: the question's id (unique within a split).
        image_id: the id of the image the question is about.
        question: the question text.
        answers: the human answers in annotation order — 10 for VQA v2 and OK-VQA; empty when
            the split has no annotations (test).
        image_path: where the image file is; ``None`` when it is not on disk (the dataset's
            ``missing_images`` lists what was looked for) or unknown.
        question_type: the official question type (``"what color is the"``), or ``None``.
        answer_type: ``"yes/no"``, ``"number"`` or ``"other"`` in VQA; ``None`` when unknown.
        multiple_choice_answer: the most frequent human answer, or ``None``.
        answer_confidences: per-answer ``answer_confidence`` (``"yes"``/``"maybe"``/``"no"``),
            parallel to ``answers``; empty when unknown.
        answer_entity_ids: knowledge-graph entity ids of the answer; empty when unknown.
        extra: any further fields of the source entry (``question_family``, ``program``,
            ``supporting_facts`` …). Not part of the hash.
    """

    question_id: RecordId
    image_id: RecordId
    question: str
    answers: tuple[str, ...] = ()
    image_path: Path | None = None
    question_type: str | None = None
    answer_type: str | None = None
    multiple_choice_answer: str | None = None
    answer_confidences: tuple[str, ...] = ()
    answer_entity_ids: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "answers", _as_str_tuple(self.answers, "answers"))
        set_(self, "answer_confidences",
             _as_str_tuple(self.answer_confidences, "answer_confidences"))
        set_(self, "answer_entity_ids", _as_str_tuple(self.answer_entity_ids, "answer_entity_ids"))
        if self.answer_confidences and len(self.answer_confidences) != len(self.answers):
            raise ValueError(
                f"answer_confidences has {len(self.answer_confidences)} items, "
                f"answers has {len(self.answers)}"
            )
        if self.image_path is not None and not isinstance(self.image_path, Path):
            set_(self, "image_path", Path(self.image_path))


@dataclass(frozen=True, slots=True)
class RetrievalRecord:
    """One image with its captions, for image–text retrieval.

    Attributes:
        image_id: the image's id.
        image_path: where the image file is; ``None`` when it is not on disk.
        captions: every caption of the image, in source order (may be empty).
        file_name: the image's path as the source names it, relative to its images folder
            (COCO ``file_name``, the JSONL ``image``); writers use it.
        caption_ids: the caption ids (COCO annotation ids), parallel to ``captions``; empty
            when the source has none.
        extra: any further fields of the source's image entry (``width``, ``coco_url`` …).
    """

    image_id: RecordId
    image_path: Path | None
    captions: tuple[str, ...]
    file_name: str | None = None
    caption_ids: tuple[RecordId, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "captions", _as_str_tuple(self.captions, "captions"))
        set_(self, "caption_ids", tuple(self.caption_ids))
        if self.caption_ids and len(self.caption_ids) != len(self.captions):
            raise ValueError(
                f"caption_ids has {len(self.caption_ids)} items, captions has {len(self.captions)}"
            )
        if self.image_path is not None and not isinstance(self.image_path, Path):
            set_(self, "image_path", Path(self.image_path))


R = TypeVar("R", VQARecord, RetrievalRecord)


class RecordDataset(Sequence[R], Generic[R]):
    """The records read from one split, in source order, plus what the reader noticed.

    Attributes:
        records: the records (a tuple).
        missing_images: image files the records refer to that are not on disk, each once,
            in first-seen order; the records concerned have ``image_path=None``.
        sources: the files the records were read from.
    """

    __slots__ = ("missing_images", "records", "sources")

    def __init__(
        self,
        records: Iterable[R],
        *,
        missing_images: Iterable[Path] = (),
        sources: Iterable[Path] = (),
    ) -> None:
        self.records: tuple[R, ...] = tuple(records)
        self.missing_images: tuple[Path, ...] = tuple(dict.fromkeys(missing_images))
        self.sources: tuple[Path, ...] = tuple(sources)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[R, ...]: ...
    def __getitem__(self, index: int | slice) -> R | tuple[R, ...]:
        return self.records[index]

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.sources)
        return (
            f"{type(self).__name__}({len(self)} records from [{names}], "
            f"{len(self.missing_images)} missing images)"
        )


class VQADataset(RecordDataset[VQARecord]):
    """A split of a VQA-style dataset (VQA v2, OK-VQA, FVQA): a sequence of :class:`VQARecord`."""

    __slots__ = ()


class CaptionDataset(RecordDataset[RetrievalRecord]):
    """A split of a captioned image set: a sequence of :class:`RetrievalRecord`."""

    __slots__ = ()
