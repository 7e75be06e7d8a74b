"""FVQA (fact-based VQA, Wang et al. 2017) in its release layout: reader.

The release unpacks to::

    new_dataset_release/all_qs_dict_release.json       {question id: question entry}
    new_dataset_release/all_fact_triples_release.json  {fact id: fact entry}
    new_dataset_release/images/<img_file>
    Name_Lists/{train,test}_list_{fold}.txt            image file names of the 5 folds

A question entry holds ``question``, ``answer``, ``img_file`` and ``fact`` (a list of fact
ids; a single id is accepted) plus ``kb_source``, ``fact_surface``, ``ans_source``,
``visual_concept``, ``question_id`` … A fact holds ``e1``, ``r``, ``e2`` plus ``e1_label``,
``e2_label``, ``surface``, ``KB`` …

Decisions:

- ``question_id`` is the key of the questions dict (a string; the entry's own
  ``question_id`` field, equal to it in the release, is not repeated in ``extra``);
  ``image_id`` is ``img_file``.
- FVQA has one answer per question; ``answers`` repeats it 10 times, so that
  :func:`~kgmm.data.vqa_eval.vqa_accuracy` is 1 for a prediction that matches it after
  normalisation and 0 otherwise — FVQA's top-1 accuracy. ``multiple_choice_answer`` is the
  answer; ``question_type`` and ``answer_type`` are ``None``.
- ``extra`` keeps the question entry's other fields, plus ``supporting_facts`` (a list of
  one dict per fact id: the fact's fields and its ``id``) and ``supporting_fact`` (the
  first of them). Like every ``extra``, these are JSON values (dicts, lists).
- A fact id that is not in the facts file, or a fact without ``e1``/``r``/``e2``, is an
  :class:`InputError`. Only the facts that questions cite are checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from kgmm.graph.errors import InputError, SourceNotFoundError

from ._io import Checker, ImageFinder, read_json, safe_relative, type_name
from .records import VQADataset, VQARecord

QUESTIONS_FILE = "all_qs_dict_release.json"
FACTS_FILE = "all_fact_triples_release.json"
RELEASE_DIR = "new_dataset_release"
NAME_LISTS_DIR = "Name_Lists"
#: How many times the single FVQA answer is repeated in ``VQARecord.answers``.
ANSWER_REPEATS = 10
_CORE = ("question", "answer", "img_file", "fact", "question_id")


def _release_dir(root: Path) -> Path:
    for candidate in (root / RELEASE_DIR, root):
        if (candidate / QUESTIONS_FILE).is_file():
            return candidate
    raise SourceNotFoundError(
        f"{root}: no {QUESTIONS_FILE} (looked in {root / RELEASE_DIR} and {root})"
    )


def _split_images(root: Path, release: Path, split: str, fold: int) -> set[str]:
    name = f"{split}_list_{fold}.txt"
    for directory in (root / NAME_LISTS_DIR, release.parent / NAME_LISTS_DIR, release):
        path = directory / name
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                return {line.strip() for line in fh if line.strip()}
    raise SourceNotFoundError(f"{root}: no {NAME_LISTS_DIR}/{name} for split {split!r}")


def _fact(
    facts: dict[str, Any], fact_id: str, facts_path: Path, questions_path: Path, label: str
) -> dict[str, Any]:
    if fact_id not in facts:
        raise InputError(f"fact {fact_id!r} is not in {facts_path.name}", source=questions_path,
                         record=label, field="fact")
    fact = facts[fact_id]
    if not isinstance(fact, dict):
        raise InputError(f"expected an object, got {type_name(fact)}", source=facts_path,
                         record=f"fact {fact_id!r}")
    check = Checker(facts_path, fact, f"fact {fact_id!r}")
    for key in ("e1", "r", "e2"):
        check.text(key)
    return {"id": fact_id, **fact}


def load_fvqa(
    root: str | os.PathLike[str],
    split: Literal["train", "test"] | None = None,
    *,
    fold: int = 0,
) -> VQADataset:
    """Read FVQA from ``root`` (the folder holding ``new_dataset_release/``, or that folder).

    Args:
        root: the dataset folder.
        split: ``"train"`` or ``"test"`` to keep the questions whose image is in
            ``Name_Lists/{split}_list_{fold}.txt``; ``None`` for every question.
        fold: which of the 5 official train/test folds (0–4).

    Returns:
        A :class:`VQADataset` in the questions file's order; images not under
        ``new_dataset_release/images/`` are in its ``missing_images``.

    Raises:
        SourceNotFoundError: a release file or the fold's name list is missing.
        InputError: a malformed entry, naming the file, the question id and the field.
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, not {split!r}")
    if fold not in range(5):
        raise ValueError(f"fold must be 0…4, not {fold!r}")
    root = Path(root)
    release = _release_dir(root)
    questions_path = release / QUESTIONS_FILE
    facts_path = release / FACTS_FILE
    questions = read_json(questions_path)
    facts = read_json(facts_path)
    for data, path in ((questions, questions_path), (facts, facts_path)):
        if not isinstance(data, dict):
            raise InputError(f"expected an object keyed by id, got {type_name(data)}",
                             source=path)
    keep = _split_images(root, release, split, fold) if split is not None else None

    finder = ImageFinder([release / "images"])
    records = []
    for qid, entry in questions.items():
        label = f"question_id {qid!r}"
        if not isinstance(entry, dict):
            raise InputError(f"expected an object, got {type_name(entry)}",
                             source=questions_path, record=label)
        check = Checker(questions_path, entry, label)
        img_file = check.text("img_file")
        assert img_file is not None
        if keep is not None and img_file not in keep:
            continue
        question, answer = check.text("question"), check.text("answer")
        assert question is not None and answer is not None
        fact_ids = entry.get("fact")
        fact_ids = [fact_ids] if isinstance(fact_ids, str) else check.texts("fact")
        if not fact_ids:
            raise check.error("no supporting fact", "fact")
        if not safe_relative(img_file):
            raise check.error(f"expected a file name inside images/, got {img_file!r}",
                              "img_file")
        supporting = [_fact(facts, f, facts_path, questions_path, label) for f in fact_ids]
        extra = {k: v for k, v in entry.items() if k not in _CORE}
        extra["supporting_facts"] = supporting
        extra["supporting_fact"] = supporting[0]
        records.append(VQARecord(
            question_id=qid,
            image_id=img_file,
            question=question,
            answers=(answer,) * ANSWER_REPEATS,
            image_path=finder.find(img_file),
            multiple_choice_answer=answer,
            extra=extra,
        ))
    finder.warn(f"FVQA {root}")
    return VQADataset(records, missing_images=finder.missing,
                      sources=[questions_path, facts_path])
