"""The official VQA accuracy: normalisation, the leave-one-out score, and the evaluator.

Two kinds of checks: numbers worked out by hand on the fixture and on small cases, and a
property test against a line-by-line port of the official ``VQAEval.evaluate`` loop
(GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py), which compares whole
answer dicts (with their ``answer_id``) the way the script does.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgmm.data import VQARecord, evaluate_vqa, load_vqa, normalize_answer, vqa_accuracy
from kgmm.data.vqa_eval import (
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    process_digit_article,
    process_punctuation,
)
from kgmm.graph.errors import InputError

VQA = Path(__file__).resolve().parent.parent / "fixtures" / "vqa"


# -- normalisation ------------------------------------------------------------------------


def test_tables_are_the_official_ones() -> None:
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["dont"] == "don't" and CONTRACTIONS["somebody'd"] == "somebodyd"
    assert CONTRACTIONS["Im"] == "I'm" and CONTRACTIONS["yall'd've"] == "y'all'd've"
    assert list(NUMBER_WORDS) == ["none", "zero", "one", "two", "three", "four", "five", "six",
                                  "seven", "eight", "nine", "ten"]
    assert "".join(PUNCTUATION) == ';/[]"{}()=+\\_-><@`,?!'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hot-dog", "hot dog"),  # a mark not next to a space becomes a space
        ("yes !", "yes "),  # next to a space: deleted
        ("black/white", "black white"),
        ("1,000", "1000"),  # a digit-comma-digit anywhere: every mark is deleted
        ("red,white and 1,2", "redwhite and 12"),
        ("3.5", "3.5"),  # a period followed by a digit stays
        ("5.", "5"),
        ("a.b.c", "abc"),
        ("don't", "don't"),  # the apostrophe is not in the list
        ("12:30", "12:30"),  # nor is the colon
    ],
)
def test_process_punctuation(text: str, expected: str) -> None:
    assert process_punctuation(text) == expected


def test_period_strip_stops_after_32_periods() -> None:
    # The official script passes re.UNICODE (== 32) as re.sub's count.
    assert process_punctuation("." * 40) == "." * 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two Dogs", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only none/zero…ten are mapped
        ("the cat on a mat", "cat on mat"),
        ("An apple", "apple"),
        ("dont know", "don't know"),
        ("Im", "im"),  # lower-cased first, so the capitalised keys never match
        ("  many   spaces ", "many spaces"),
    ],
)
def test_process_digit_article(text: str, expected: str) -> None:
    assert process_digit_article(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("Two dogs.", "2 dogs"),
        ("a hot-dog", "hot dog"),
        ("\tThe\nLeft ", "left"),
        ("1,000", "1000"),
        ("It's a T-shirt!", "it's t shirt"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# -- the accuracy of one answer -----------------------------------------------------------


@pytest.mark.parametrize(
    ("matches", "expected"),
    # m of the 10 answers match. m leave-one-out subsets drop a match and see m-1 of them,
    # 10-m drop another answer and see m:  acc = (m·min(1,(m-1)/3) + (10-m)·min(1,m/3)) / 10
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_leave_one_out_values(matches: int, expected: float) -> None:
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_human_answers_get_punctuation_only_and_only_when_they_differ() -> None:
    # "two" among the human answers stays "two"; the prediction "two" becomes "2".
    assert vqa_accuracy("two", ["two"] * 3 + ["2"] * 7) == 1.0  # 7 × "2" match
    assert vqa_accuracy("two", ["two"] * 7 + ["2"] * 3) == pytest.approx(0.9)
    # Ten identical answers are not processed at all: "t-shirt" ≠ "t shirt".
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 10) == 0.0
    # One differing answer switches processing on: 9 × "t shirt" now match.
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 9 + ["shirt"]) == 1.0


def test_any_number_of_answers_and_errors() -> None:
    assert vqa_accuracy("a", ["a"]) == 0.0  # no other human to agree
    assert vqa_accuracy("x", ["x", "x", "x", "x"]) == 1.0
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])
    with pytest.raises(TypeError):
        vqa_accuracy("x", "x")


# -- a literal port of the official loop, for the property test ------------------------------

_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA = re.compile(r"(\d)(\,)(\d)")


def _official_process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in PUNCTUATION:
        if (p + " " in in_text or " " + p in in_text) or (re.search(_COMMA, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return _PERIOD.sub("", out_text, count=re.UNICODE)


def _official_process_digit_article(in_text: str) -> str:
    manual_map = dict(NUMBER_WORDS)
    out_text = []
    for word in in_text.lower().split():
        word = manual_map.setdefault(word, word)
        if word not in ["a", "an", "the"]:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in CONTRACTIONS:
            out_text[word_id] = CONTRACTIONS[word]
    return " ".join(out_text)


def _official_accuracy(res_ans: str, answers: list[str]) -> float:
    gts = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
           for i, a in enumerate(answers)]
    res_ans = res_ans.replace("\n", " ").replace("\t", " ").strip()
    res_ans = _official_process_digit_article(_official_process_punctuation(res_ans))
    gt_acc = []
    gt_answers = [ans["answer"] for ans in gts]
    if len(set(gt_answers)) > 1:
        for ans_dic in gts:
            ans_dic["answer"] = _official_process_punctuation(ans_dic["answer"])
    for gt_ans_datum in gts:
        other_gt_ans = [item for item in gts if item != gt_ans_datum]
        matching_ans = [item for item in other_gt_ans if item["answer"] == res_ans]
        acc = min(1, float(len(matching_ans)) / 3)
        gt_acc.append(acc)
    return float(sum(gt_acc)) / len(gt_acc)


_WORDS = ["2", "two", "Two", "none", "0", "t-shirt", "t shirt", "hot dog", "hot-dog", "1,000",
          "1000", "don't", "dont", "yes", "Yes.", "the cat", "cat", "a.m.", "3.5", "red, white",
          "red white", "(left)", "left", "it's", "its", "an apple", "apple", "!"]


@settings(max_examples=300, deadline=None)
@given(
    prediction=st.one_of(st.sampled_from(_WORDS), st.text(max_size=12)),
    answers=st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=8)),
                     min_size=1, max_size=10),
)
def test_matches_the_official_loop(prediction: str, answers: list[str]) -> None:
    assert vqa_accuracy(prediction, answers) == _official_accuracy(prediction, answers)


# -- the evaluator on the fixture -------------------------------------------------------------
#
# tests/fixtures/vqa (split val) holds six questions; results.json predicts:
#   420 "is the"/yes-no   "Yes."      → "yes"; ten "yes" (not processed): m=10     → 100
#   421 "how many"/number "Two"       → "2"; answers 2,2,two,two,3,3,3,3,4,4: "two" is
#                                        left alone (punctuation only), so m=2      → 60
#   730 "what is the"/other "a hot-dog" → "hot dog" (article dropped, "-" → " ");
#                                        "hot dog" and "hot-dog"→"hot dog": m=2     → 60
#   731 "why"/other       "dont know" → "don't know" (contraction); 3 × "don't know" → 90
#   740 "how many"/number "1,000"     → "1000" (digit comma: marks deleted); answers
#                                        1000,1000,"1,000"→"1000": m=3             → 90
#   741 "how many"/number "none"      → "0"; one "0" among nine "none": m=1         → 30
# overall      = (100+60+60+90+90+30)/6 = 71.666… → 71.67
# per answer:  yes/no 100; number (60+90+30)/3 = 60; other (60+90)/2 = 75
# per question type: "is the" 100; "how many" 60; "what is the" 60; "why" 90

EXPECTED = {
    "overall": 71.67,
    "perAnswerType": {"yes/no": 100.0, "number": 60.0, "other": 75.0},
    "perQuestionType": {"is the": 100.0, "how many": 60.0, "what is the": 60.0, "why": 90.0},
    "perQuestion": {420: 100.0, 421: 60.0, 730: 60.0, 731: 90.0, 740: 90.0, 741: 30.0},
}


def test_evaluate_fixture_from_files() -> None:
    result = evaluate_vqa(VQA / "results.json", VQA / "v2_mscoco_val2014_annotations.json")
    assert result == EXPECTED  # no question_family in the official data


def test_evaluate_fixture_from_records_and_mapping() -> None:
    ds = load_vqa(VQA, "val")
    preds = {e["question_id"]: e["answer"]
             for e in json.loads((VQA / "results.json").read_text())}
    assert evaluate_vqa(preds, ds) == EXPECTED
    # A subset, like the official evaluate(quesIds=...).
    sub = evaluate_vqa(preds, ds, question_ids=[421, 741])
    assert sub["overall"] == 45.0 and sub["perAnswerType"] == {"number": 45.0}


def test_evaluate_groups_by_question_family() -> None:
    recs = [
        VQARecord(question_id=1, image_id=1, question="q", answers=("red",) * 10,
                  question_type="what color", answer_type="other",
                  extra={"question_family": "color"}),
        VQARecord(question_id=2, image_id=1, question="q", answers=("blue",) * 10,
                  question_type="what color", answer_type="other",
                  extra={"question_family": "color"}),
        VQARecord(question_id=3, image_id=2, question="q", answers=("3",) * 3 + ("4",) * 7,
                  question_type="how many", answer_type="number",
                  extra={"question_family": "count"}),
    ]
    result = evaluate_vqa({1: "Red", 2: "green", 3: "three"}, recs)
    # 1 → 1, 2 → 0, 3: "three" → "3" matches 3 answers → 0.9
    assert result["perQuestionFamily"] == {"color": 50.0, "count": 90.0}
    assert result["overall"] == round(100 * 1.9 / 3, 2) == 63.33


def test_evaluate_skips_unknown_types_in_the_tables() -> None:
    recs = [VQARecord(question_id="a", image_id="x", question="q", answers=("trumpet",) * 10)]
    result = evaluate_vqa({"a": "trumpets"}, recs)
    assert result == {"overall": 0.0, "perQuestionType": {}, "perAnswerType": {},
                      "perQuestion": {"a": 0.0}}


def test_evaluate_refuses_what_the_official_script_refuses(tmp_path: Path) -> None:
    ann = VQA / "v2_mscoco_val2014_annotations.json"
    preds = {420: "yes", 421: "2", 730: "x", 731: "x", 740: "x", 741: "x"}
    with pytest.raises(InputError, match="no annotation") as err:
        evaluate_vqa({**preds, 999: "yes"}, ann)
    assert err.value.record == "question_id 999"
    with pytest.raises(InputError, match="no prediction") as err:
        evaluate_vqa({420: "yes"}, ann)
    assert err.value.record == "question_id 421"
    test_split = load_vqa(VQA, "test-dev")
    with pytest.raises(InputError, match="no human answers"):
        evaluate_vqa({150: "red", 151: "no"}, test_split)


@pytest.mark.parametrize(
    ("content", "match", "field"),
    [
        ('{"question_id": 1, "answer": "x"}', "expected an array", None),
        ('[{"question_id": 420}]', "missing required field", "answer"),
        ('[{"question_id": 420, "answer": 2}]', "expected a string", "answer"),
        ('[{"question_id": 420, "answer": "a"}, {"question_id": 420, "answer": "b"}]',
         "duplicate", "question_id"),
        ('[{"question_id": 420, "answer": "a"},', "not valid JSON", None),
    ],
)
def test_malformed_results_file(tmp_path: Path, content: str, match: str,
                                field: str | None) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as err:
        evaluate_vqa(path, VQA / "v2_mscoco_val2014_annotations.json")
    assert err.value.source == str(path) and err.value.field == field


def test_annotations_file_with_any_number_of_answers(tmp_path: Path) -> None:
    # The evaluator scores any non-zero number of answers (the reader insists on 10).
    shutil.copy(VQA / "v2_mscoco_val2014_annotations.json", tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    data["annotations"] = data["annotations"][:1]
    data["annotations"][0]["answers"] = data["annotations"][0]["answers"][:4]
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert evaluate_vqa({420: "yes"}, tmp_path / "a.json")["overall"] == 100.0
