"""VQA v2 and OK-VQA in their official JSON layout: reader and writer.

A split is two files — questions and annotations — joined by ``question_id``::

    questions:   {"info", "task_type", "data_type", "data_subtype", "license",
                  "questions": [{"image_id", "question", "question_id"}, ...]}
    annotations: {"info", "license", "data_type", "data_subtype",
                  "annotations": [{"question_type", "multiple_choice_answer",
                                   "answers": [{"answer", "answer_confidence", "answer_id"}],
                                   "image_id", "answer_type", "question_id"}, ...]}

File names (``{sub}`` is the data subtype: ``train`` → ``train2014``, ``val`` → ``val2014``,
``test`` → ``test2015``, ``test-dev`` → ``test-dev2015``, anything else as given):

- VQA v2: ``v2_OpenEnded_mscoco_{sub}_questions.json`` / ``v2_mscoco_{sub}_annotations.json``
- OK-VQA (and VQA v1, which shares the naming): ``OpenEnded_mscoco_{sub}_questions.json`` /
  ``mscoco_{sub}_annotations.json``

They are looked for in ``root``, ``root/questions``, ``root/Questions``, ``root/annotations``
and ``root/Annotations``. Images are looked for, in this order, as
``COCO_{isub}_{image_id:012d}.jpg`` (``isub`` is ``test2015`` for test-dev) in ``root/{isub}/``,
``root/images/{isub}/``, ``root/Images/mscoco/{isub}/`` (the layout of the official demo) and the
flat ``root/images/``. An entry with a ``file_name`` field overrides that: the name is taken
relative to ``root``, then to ``root/images/``.

Decisions:

- An annotation file must hold exactly ``num_answers`` (default 10) answers per question,
  as both official releases do; ``num_answers=None`` accepts any non-zero count.
- An annotation must have ``question_id``, ``image_id``, ``question_type``, ``answer_type``
  and ``answers`` (each with ``answer`` and ``answer_confidence``); ``multiple_choice_answer``
  is optional, as OK-VQA has none.
- Every annotation must match a question and every question an annotation; the two must
  agree on ``image_id``.
- Fields beyond the official ones, of a question or of an annotation, go to
  ``VQARecord.extra`` (the annotation's value wins when both carry one);
  ``answer_entity_ids`` goes to its own field. Extra fields of the individual answers
  (OK-VQA's ``raw_answer``) go to ``extra["answers_extra"]``, a list of one dict per answer.
- The test split has no annotation file: its records have no answers. Other splits require
  one unless ``require_annotations=False``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from kgmm.graph.errors import InputError, SourceNotFoundError

from ._io import (
    Checker,
    ImageFinder,
    entry_object,
    find_file,
    image_subtype,
    is_id,
    read_json,
    safe_relative,
    top_level,
    write_json,
)
from ._io import data_subtype as _subtype
from .records import RecordId, VQADataset, VQARecord

Variant = Literal["v2", "okvqa"]

#: (questions file, annotations file) name patterns per variant.
FILE_PATTERNS: dict[str, tuple[str, str]] = {
    "v2": ("v2_OpenEnded_mscoco_{sub}_questions.json", "v2_mscoco_{sub}_annotations.json"),
    "okvqa": ("OpenEnded_mscoco_{sub}_questions.json", "mscoco_{sub}_annotations.json"),
}
_JSON_DIRS = ("", "questions", "Questions", "annotations", "Annotations")

QUESTION_FIELDS = ("image_id", "question", "question_id")
ANNOTATION_FIELDS = (
    "question_type", "multiple_choice_answer", "answers", "image_id", "answer_type", "question_id"
)
ANSWER_FIELDS = ("answer", "answer_confidence", "answer_id")
#: The ``extra`` key holding per-answer fields beyond :data:`ANSWER_FIELDS`.
ANSWERS_EXTRA = "answers_extra"
_RECORD_FIELDS = frozenset(ANNOTATION_FIELDS) | {"question", "answer_entity_ids"}
_ANSWER_FIELD_SET = frozenset(ANSWER_FIELDS)
_ANNOTATION_FIELD_SET = frozenset(ANNOTATION_FIELDS) | {"answer_entity_ids"}


def vqa_paths(
    root: str | os.PathLike[str], split: str, variant: Variant = "v2"
) -> tuple[Path, Path]:
    """The official ``(questions, annotations)`` file paths of ``split`` directly under ``root``."""
    questions, annotations = FILE_PATTERNS[variant]
    sub = _subtype(split)
    root = Path(root)
    return root / questions.format(sub=sub), root / annotations.format(sub=sub)


def find_vqa_files(
    root: str | os.PathLike[str], split: str, variant: Variant | Literal["auto"] = "auto"
) -> tuple[Variant, Path, Path | None]:
    """Locate the questions and annotations files of ``split``: ``(variant, questions,
    annotations or None)``. ``variant="auto"`` tries VQA v2 names, then OK-VQA names, and
    refuses a folder holding both."""
    root = Path(root)
    if not root.is_dir():
        raise SourceNotFoundError(f"{root}: no such directory")
    sub = _subtype(split)
    dirs = [root / d for d in _JSON_DIRS]
    variants: list[Variant] = ["v2", "okvqa"] if variant == "auto" else [variant]
    found: list[tuple[Variant, Path]] = []
    for v in variants:
        path = find_file([FILE_PATTERNS[v][0].format(sub=sub)], dirs)
        if path is not None:
            found.append((v, path))
    if not found:
        names = [FILE_PATTERNS[v][0].format(sub=sub) for v in variants]
        raise SourceNotFoundError(
            f"{root}: no questions file for split {split!r} (looked for {' or '.join(names)} "
            f"in {', '.join(d or '.' for d in _JSON_DIRS)})"
        )
    if len(found) > 1:
        raise InputError(
            f"both VQA v2 ({found[0][1].name}) and OK-VQA ({found[1][1].name}) questions are "
            "here; pass variant='v2' or variant='okvqa'",
            source=root,
        )
    v, questions = found[0]
    annotations = find_file([FILE_PATTERNS[v][1].format(sub=sub)], dirs)
    return v, questions, annotations


def _record_label(index: int, qid: object) -> str:
    return f"{index} (question_id {qid!r})"


def _parse_question(entry: Any, index: int, source: Path) -> dict[str, Any]:
    entry = entry_object(entry, source, index)
    qid = Checker(source, entry, index).ident("question_id")
    check = Checker(source, entry, _record_label(index, qid))
    return {
        "question_id": qid,
        "image_id": check.ident("image_id"),
        "question": check.text("question"),
        "extra": {k: v for k, v in entry.items() if k not in QUESTION_FIELDS},
        "label": check.record,
    }


def parse_annotation(
    entry: Any, index: int, source: Path, num_answers: int | None = 10
) -> dict[str, Any]:
    """Validate one official annotation entry and return its fields as record arguments
    (plus ``"label"``, how errors name it)."""
    entry = entry_object(entry, source, index)
    qid = Checker(source, entry, index).ident("question_id")
    check = Checker(source, entry, _record_label(index, qid))
    raw_answers = check.array("answers")
    assert raw_answers is not None
    if not raw_answers:
        raise check.error("no answers", "answers")
    if num_answers is not None and len(raw_answers) != num_answers:
        raise check.error(f"expected {num_answers} answers, got {len(raw_answers)}", "answers")
    answers, confidences = [], []
    answers_extra: list[dict[str, Any]] = []
    has_extra = False
    for j, item in enumerate(raw_answers):
        # The common, well-formed case is checked inline: this loop runs 10× per question.
        if not isinstance(item, dict):
            raise check.error(f"answer {j}: expected an object", "answers")
        answer, confidence = item.get("answer"), item.get("answer_confidence")
        if not (isinstance(answer, str) and isinstance(confidence, str)
                and ("answer_id" not in item or is_id(item["answer_id"]))):
            sub = Checker(source, item, f"{check.record}, answer {j}")
            sub.text("answer")
            sub.text("answer_confidence")
            sub.ident("answer_id")
        answers.append(answer)
        confidences.append(confidence)
        if len(item) == 3 and "answer_id" in item:
            answers_extra.append({})
        else:
            more = {k: v for k, v in item.items() if k not in _ANSWER_FIELD_SET}
            has_extra = has_extra or bool(more)
            answers_extra.append(more)
    extra = {k: v for k, v in entry.items() if k not in _ANNOTATION_FIELD_SET}
    if has_extra:
        extra[ANSWERS_EXTRA] = answers_extra
    return {
        "question_id": qid,
        "image_id": check.ident("image_id"),
        "answers": tuple(answers),
        "answer_confidences": tuple(confidences),
        "question_type": check.text("question_type"),
        "answer_type": check.text("answer_type"),
        "multiple_choice_answer": check.text("multiple_choice_answer", required=False),
        "answer_entity_ids": tuple(check.texts("answer_entity_ids", required=False) or ()),
        "extra": extra,
        "label": check.record,
    }


def read_vqa_annotations(
    path: str | os.PathLike[str], num_answers: int | None = 10
) -> dict[RecordId, dict[str, Any]]:
    """Read an official annotations file: ``question_id`` → parsed annotation (see
    :func:`parse_annotation`), in file order."""
    path = Path(path)
    (entries,) = top_level(read_json(path), path, "annotations")
    out: dict[RecordId, dict[str, Any]] = {}
    for i, entry in enumerate(entries):
        ann = parse_annotation(entry, i, path, num_answers)
        if ann["question_id"] in out:
            raise InputError("duplicate question_id", source=path, record=ann["label"],
                             field="question_id")
        out[ann["question_id"]] = ann
    return out


def load_vqa(
    root: str | os.PathLike[str],
    split: str,
    *,
    variant: Variant | Literal["auto"] = "auto",
    num_answers: int | None = 10,
    require_annotations: bool | None = None,
) -> VQADataset:
    """Read one split of VQA v2 or OK-VQA from ``root`` (layout in the module docstring).

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"``, ``"test"``, ``"test-dev"`` or a data subtype
            (``"val2014"``).
        variant: ``"v2"``, ``"okvqa"``, or ``"auto"`` to tell them by the file names.
        num_answers: answers each annotation must have; ``None`` for any non-zero count.
        require_annotations: whether a missing annotations file is an error; by default it
            is, except for test splits.

    Returns:
        A :class:`VQADataset` of the questions in file order; images not on disk are listed
        in its ``missing_images`` and have ``image_path=None``. Images are never opened.

    Raises:
        SourceNotFoundError: no questions file (or no required annotations file).
        InputError: a malformed file or entry, naming the file, entry, question id and field.
    """
    root = Path(root)
    _, questions_path, annotations_path = find_vqa_files(root, split, variant)
    sub = _subtype(split)
    if require_annotations is None:
        require_annotations = not sub.startswith("test")
    if annotations_path is None and require_annotations:
        raise SourceNotFoundError(
            f"{root}: no annotations file next to {questions_path.name} for split {split!r}"
        )
    annotations = (
        read_vqa_annotations(annotations_path, num_answers) if annotations_path else None
    )
    (entries,) = top_level(read_json(questions_path), questions_path, "questions")

    isub = image_subtype(sub)
    official = ImageFinder([root / isub, root / "images" / isub, root / "Images" / "mscoco" / isub,
                            root / "images"])
    by_name = ImageFinder([root, root / "images"], missing=official.missing)
    seen: set[RecordId] = set()
    records = []
    for i, entry in enumerate(entries):
        q = _parse_question(entry, i, questions_path)
        qid = q["question_id"]
        if qid in seen:
            raise InputError("duplicate question_id", source=questions_path, record=q["label"],
                             field="question_id")
        seen.add(qid)
        fields: dict[str, Any] = {}
        extra = q["extra"]
        where = (questions_path, q["label"])  # who named the image, for errors
        if annotations is not None:
            ann = annotations.pop(qid, None)
            if ann is None:
                raise InputError(f"no annotation for this question in {annotations_path}",
                                 source=questions_path, record=q["label"], field="question_id")
            if ann["image_id"] != q["image_id"]:
                raise InputError(
                    f"image_id {ann['image_id']!r} differs from the question's "
                    f"{q['image_id']!r}", source=annotations_path, record=ann["label"],
                    field="image_id",
                )
            fields = {k: v for k, v in ann.items()
                      if k not in ("question_id", "image_id", "extra", "label")}
            extra = {**extra, **ann["extra"]}
            if "file_name" in ann["extra"]:
                where = (annotations_path, ann["label"])
        image_path = _find_image(q["image_id"], extra, isub, official, by_name, *where)
        records.append(VQARecord(question_id=qid, image_id=q["image_id"],
                                 question=q["question"], image_path=image_path, extra=extra,
                                 **fields))
    if annotations:
        ann = next(iter(annotations.values()))
        raise InputError("annotation has no matching question", source=annotations_path,
                         record=ann["label"], field="question_id")
    official.warn(f"{root} {split}")
    sources = [questions_path] + ([annotations_path] if annotations_path else [])
    return VQADataset(records, missing_images=official.missing, sources=sources)


def coco_image_name(subtype: str, image_id: RecordId) -> str:
    """``COCO_val2014_000000000042.jpg`` for an int id; a string id is used as the name."""
    if isinstance(image_id, int):
        return f"COCO_{subtype}_{image_id:012d}.jpg"
    return image_id


def _find_image(
    image_id: RecordId,
    extra: Mapping[str, Any],
    isub: str,
    official: ImageFinder,
    by_name: ImageFinder,
    source: Path,
    label: str,
) -> Path | None:
    file_name = extra.get("file_name")
    if file_name is None:
        return official.find(coco_image_name(isub, image_id))
    if not isinstance(file_name, str) or not safe_relative(file_name):
        raise InputError(f"expected a relative path inside the dataset, got {file_name!r}",
                         source=source, record=label, field="file_name")
    return by_name.find(file_name)


def write_vqa(
    records: Iterable[VQARecord],
    questions_path: str | os.PathLike[str],
    annotations_path: str | os.PathLike[str] | None = None,
    *,
    data_subtype: str = "",
    data_type: str = "mscoco",
    task_type: str = "Open-Ended",
    info: Mapping[str, Any] | None = None,
    license: Mapping[str, Any] | None = None,
) -> tuple[Path, Path | None]:
    """Write records in the official layout (see :func:`vqa_paths` for official names).

    Answers get ``answer_id`` 1…n and ``answer_confidence`` from ``answer_confidences``
    (``"yes"`` when unknown); ``multiple_choice_answer`` is written unless it is ``None``
    (OK-VQA has none). ``extra`` fields are written on the
    annotations (on the questions when no annotations file is written), so reading the
    files back gives the same records; ``extra["answers_extra"]`` is merged back into the
    answers. Images are neither copied nor named: :func:`load_vqa` finds them by id or by an
    ``extra["file_name"]``.

    Raises:
        InputError: a duplicate ``question_id``; with an annotations file, a record without
            answers, ``question_type`` or ``answer_type``; an extra field named like an
            official one.
    """
    questions_path = Path(questions_path)
    target = Path(annotations_path) if annotations_path is not None else None
    questions: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[RecordId] = set()
    for i, rec in enumerate(records):
        label = _record_label(i, rec.question_id)
        if rec.question_id in seen:
            raise InputError("duplicate question_id", source="<records>", record=label,
                             field="question_id")
        seen.add(rec.question_id)
        extra = dict(rec.extra)
        answers_extra = extra.pop(ANSWERS_EXTRA, None)
        if answers_extra is not None and not (
            isinstance(answers_extra, list | tuple)
            and len(answers_extra) == len(rec.answers)
            and all(isinstance(a, Mapping) for a in answers_extra)
        ):
            raise InputError(f"expected one object per answer ({len(rec.answers)})",
                             source="<records>", record=label, field=ANSWERS_EXTRA)
        for key in extra:
            if key in _RECORD_FIELDS or key in QUESTION_FIELDS:
                raise InputError("extra field shadows an official field", source="<records>",
                                 record=label, field=key)
        question = {"image_id": rec.image_id, "question": rec.question,
                    "question_id": rec.question_id}
        if target is None:
            questions.append({**question, **extra})
            continue
        questions.append(question)
        if not rec.answers:
            raise InputError("no answers to write", source="<records>", record=label,
                             field="answers")
        for name in ("question_type", "answer_type"):
            if getattr(rec, name) is None:
                raise InputError("required by the annotations file", source="<records>",
                                 record=label, field=name)
        confidences = rec.answer_confidences or ("yes",) * len(rec.answers)
        answers = []
        for j, (answer, confidence) in enumerate(zip(rec.answers, confidences, strict=True)):
            item: dict[str, Any] = {"answer": answer, "answer_confidence": confidence,
                                    "answer_id": j + 1}
            if answers_extra is not None:
                item.update(answers_extra[j])
            answers.append(item)
        annotation: dict[str, Any] = {"question_type": rec.question_type}
        if rec.multiple_choice_answer is not None:
            annotation["multiple_choice_answer"] = rec.multiple_choice_answer
        annotation.update(answers=answers, image_id=rec.image_id, answer_type=rec.answer_type,
                          question_id=rec.question_id)
        if rec.answer_entity_ids:
            annotation["answer_entity_ids"] = list(rec.answer_entity_ids)
        annotations.append({**annotation, **extra})

    header = {"info": dict(info or {}), "license": dict(license or {}),
              "data_subtype": data_subtype, "data_type": data_type}
    write_json(questions_path, {**header, "task_type": task_type, "questions": questions})
    if target is not None:
        write_json(target, {**header, "annotations": annotations})
    return questions_path, target
