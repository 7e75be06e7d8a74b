"""The official VQA accuracy, reproduced from the VQA evaluation script.

Reference: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA
(Aishwarya Agrawal; the Python 3 revision on master), which scores VQA v2 and OK-VQA. Its
behaviour is kept exactly, quirks included:

- The prediction is normalised in full (:func:`normalize_answer`): newlines and tabs become
  spaces, then :func:`process_punctuation`, then :func:`process_digit_article`.
- The human answers get only :func:`process_punctuation`, and only when they are not all
  identical (``len(set(answers)) > 1``). So ``"two"`` among the human answers never matches a
  prediction ``"two"`` (normalised to ``"2"``), and ten identical ``"t-shirt"`` answers never
  match anything: the prediction becomes ``"t shirt"``. The official annotations are
  already normalised, which is why this rarely matters on VQA itself.
- Punctuation: if the text contains a comma between two digits, every mark of the list is
  deleted; otherwise a mark next to a space is deleted and any other becomes a space. The
  apostrophe and the colon are not in the list. Then periods not followed by a digit are
  deleted — the official regex ``(?!<=\\d)(\\.)(?!\\d)`` means a look-ahead (a typo for a
  look-behind), so ``"5."`` loses its period and ``"3.5"`` keeps it — at most 32 of them,
  because the script passes ``re.UNICODE`` (32) where ``sub`` takes its ``count``.
- Words: lower-cased, split on whitespace, number words ``none``/``zero`` … ``ten`` mapped to
  digits, articles ``a``/``an``/``the`` dropped, contractions restored from the official
  table (``dont`` → ``don't``; its capitalised keys such as ``Im`` never match).
- Scores are in percent, rounded to 2 decimals with Python's ``round``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError

from ._io import Checker, entry_object, read_json, type_name
from .records import RecordId, VQARecord
from .vqa import read_vqa_annotations

#: The contractions table of the official script: a word spelt without its apostrophe →
#: the spelling the human answers use. Kept as published, odd entries included.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

#: Number words the official script maps to digits (its ``manualMap``).
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES = frozenset({"a", "an", "the"})

#: Punctuation marks handled by :func:`process_punctuation`, in the official order.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
               "@", "`", ",", "?", "!")

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
#: ``re.UNICODE``'s value, which the official script passes as ``sub``'s ``count``.
_PERIOD_STRIP_COUNT = 32


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``.

    For each mark of :data:`PUNCTUATION`: delete it if the original text has the mark next to
    a space or has a digit-comma-digit anywhere, else replace it by a space. Then delete
    (at most 32) periods not followed by a digit.
    """
    out = text
    digit_comma = _COMMA_STRIP.search(text) is not None
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or digit_comma:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, split on whitespace, map number
    words to digits, drop articles, restore contractions, join with single spaces."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


#: Human answers repeat a lot across a split; both steps are pure functions of the text.
_cached_punctuation = lru_cache(maxsize=1 << 16)(process_punctuation)


@lru_cache(maxsize=1 << 16)
def _cached_normalize(answer: str) -> str:
    return normalize_answer(answer)


def normalize_answer(answer: str) -> str:
    """Normalise a predicted answer as the official script does: newlines and tabs to
    spaces, strip, :func:`process_punctuation`, :func:`process_digit_article`.

    >>> normalize_answer("Two dogs.")
    '2 dogs'
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against the human answers, in [0, 1].

    With ``p = normalize_answer(prediction)``, ``g_j`` the human answers (passed through
    :func:`process_punctuation` when they are not all the same) and ``n = len(answers)``::

        acc = 1/n · Σ_i min(1, #{j ≠ i : g_j = p} / 3)

    the mean over the ``n`` leave-one-out subsets of "at least 3 of the other humans agree".
    With 10 answers of which ``m`` match: m=0 → 0, 1 → 0.3, 2 → 0.6, 3 → 0.9, ≥4 → 1.

    Raises:
        ValueError: ``answers`` is empty.
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a sequence of strings, not a single string")
    if not answers:
        raise ValueError("no human answers to score against")
    predicted = _cached_normalize(prediction)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [_cached_punctuation(a) for a in gts]
    matches = [g == predicted for g in gts]
    total = sum(matches)
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(gts)


def _percent(values: Sequence[float], digits: int) -> float:
    """``round(100 * sum / count, digits)``, in the official script's order of operations."""
    return round(100 * float(sum(values)) / len(values), digits)


def _read_results(path: Path) -> dict[RecordId, str]:
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"expected an array of {{question_id, answer}}, got {type_name(data)}",
                         source=path)
    out: dict[RecordId, str] = {}
    for i, entry in enumerate(data):
        entry = entry_object(entry, path, i)
        qid = Checker(path, entry, i).ident("question_id")
        label = f"{i} (question_id {qid!r})"
        answer = Checker(path, entry, label).text("answer")
        if qid in out:
            raise InputError("duplicate question_id", source=path, record=label,
                             field="question_id")
        assert answer is not None
        out[qid] = answer
    return out


def _ground_truth(
    annotations: Iterable[VQARecord] | str | os.PathLike[str],
) -> dict[RecordId, tuple[tuple[str, ...], str | None, str | None, Any]]:
    """question_id → (answers, question_type, answer_type, question_family)."""
    if isinstance(annotations, str | os.PathLike):
        parsed = read_vqa_annotations(Path(annotations), num_answers=None)
        return {qid: (a["answers"], a["question_type"], a["answer_type"],
                      a["extra"].get("question_family"))
                for qid, a in parsed.items()}
    out = {}
    for i, rec in enumerate(annotations):
        if rec.question_id in out:
            raise InputError("duplicate question_id", source="<annotations>",
                             record=f"{i} (question_id {rec.question_id!r})",
                             field="question_id")
        out[rec.question_id] = (rec.answers, rec.question_type, rec.answer_type,
                                rec.extra.get("question_family"))
    return out


def evaluate_vqa(
    predictions: Mapping[RecordId, str] | str | os.PathLike[str],
    annotations: Iterable[VQARecord] | str | os.PathLike[str],
    *,
    question_ids: Iterable[RecordId] | None = None,
    digits: int = 2,
) -> dict[str, Any]:
    """Score predictions with :func:`vqa_accuracy`, as the official ``VQAEval.evaluate``.

    Args:
        predictions: ``question_id`` → answer, or the path of an official results file
            (``[{"question_id": ..., "answer": ...}, ...]``).
        annotations: the ground truth: records (a :class:`VQADataset`) or the path of an
            official annotations file.
        question_ids: the questions to score; by default every annotated question.
        digits: decimals of the percentages.

    Returns:
        ``{"overall": %, "perQuestionType": {type: %}, "perAnswerType": {type: %},
        "perQuestion": {question_id: %}}`` — the official keys — plus
        ``"perQuestionFamily": {family: %}`` when annotations carry ``question_family``.
        Each group's score is the mean of its questions' accuracies; questions whose type
        is unknown (``None``) count only in ``overall``.

    Raises:
        InputError: a prediction for a question that has no annotation; a scored question
            without a prediction (the official script refuses both) or without answers; a
            malformed results file.
    """
    pred_source = "<predictions>"
    if isinstance(predictions, str | os.PathLike):
        pred_source = str(predictions)
        predictions = _read_results(Path(predictions))
    truth = _ground_truth(annotations)
    for qid in predictions:
        if qid not in truth:
            raise InputError("prediction for a question that has no annotation",
                             source=pred_source, record=f"question_id {qid!r}",
                             field="question_id")
    ids = list(truth) if question_ids is None else list(question_ids)
    if not ids:
        raise InputError("no questions to evaluate", source=pred_source)

    per_question: dict[RecordId, float] = {}
    groups: dict[str, dict[Any, list[float]]] = {
        "perQuestionType": defaultdict(list),
        "perAnswerType": defaultdict(list),
        "perQuestionFamily": defaultdict(list),
    }
    for qid in ids:
        if qid not in truth:
            raise InputError("no annotation for this question", source="<question_ids>",
                             record=f"question_id {qid!r}", field="question_id")
        answers, question_type, answer_type, family = truth[qid]
        if qid not in predictions:
            raise InputError("no prediction for this question", source=pred_source,
                             record=f"question_id {qid!r}", field="question_id")
        if not answers:
            raise InputError("the question has no human answers to score against",
                             source="<annotations>", record=f"question_id {qid!r}",
                             field="answers")
        prediction = predictions[qid]
        if not isinstance(prediction, str):
            raise InputError(f"expected a string, got {type_name(prediction)}",
                             source=pred_source, record=f"question_id {qid!r}", field="answer")
        acc = vqa_accuracy(prediction, answers)
        per_question[qid] = acc
        for key, value in (("perQuestionType", question_type), ("perAnswerType", answer_type),
                           ("perQuestionFamily", family)):
            if value is not None:
                groups[key][_hashable(value)].append(acc)

    result: dict[str, Any] = {
        "overall": _percent(list(per_question.values()), digits),
    }
    for key, table in groups.items():
        if key == "perQuestionFamily" and not table:
            continue
        result[key] = {k: _percent(v, digits) for k, v in table.items()}
    result["perQuestion"] = {qid: round(100 * acc, digits) for qid, acc in per_question.items()}
    return result


def _hashable(value: Any) -> Any:
    """Group keys must be hashable: a list-valued family (a JSON array) becomes a tuple."""
    return tuple(value) if isinstance(value, list) else value
