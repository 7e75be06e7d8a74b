"""The public face: model directories, ``KGMM.load``, ``answer``/``answer_batch``, bad input.

The model here is small and untrained (toy KG, small CNN, real MiniLM): these tests check the
plumbing and the errors, not accuracy (tests/reasoning/test_vqa_model.py checks learning).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import SnapshotError
from kgmm.pipeline import KGMM, Answer, ModelError, answer, save_model
from kgmm.reasoning.encoders import build_image_encoder
from kgmm.reasoning.inputs import ImageInputError, QuestionInputError
from kgmm.reasoning.scene_parser import SceneParser, SceneParserConfig
from kgmm.reasoning.vqa_model import COUNT, YESNO, VQAModel
from kgmm.reasoning.vqa_train import default_config

from .graph.toy_kg import toy_graph


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    kg = CompiledKG.build(toy_graph())
    image_encoder = build_image_encoder("small_cnn", image_size=64)
    config = default_config(kg, ["<unk>", COUNT, YESNO], use_kg=True,
                            image_dim=image_encoder.dim, layers=2)
    vqa = VQAModel(config)
    parser = SceneParser(SceneParserConfig(feature_dim=image_encoder.dim, embed_dim=384,
                                           objectness_threshold=0.0, max_objects=3))
    path = tmp_path_factory.mktemp("models") / "toy"
    save_model(path, kg=kg, vqa=vqa, parser=parser,
               parser_entities=["ex:dog", "ex:cat", "ex:apple", "ex:car"],
               surface_forms={"ex:car": "automobile"}, image_size=64,
               trained_image_encoder=image_encoder)
    return path


@pytest.fixture(scope="module")
def model(model_dir, tmp_path_factory):
    return KGMM.load(model_dir, data_dir=tmp_path_factory.mktemp("home"))


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_answer_has_score_alternatives_and_evidence(model: KGMM) -> None:
    result = model.answer(_image(), "What kind of thing is the dog?", top_k=4)
    assert isinstance(result, Answer) and result.text
    assert 0.0 <= result.score <= 1.0
    scores = [result.score, *[a.score for a in result.alternatives]]
    assert scores == sorted(scores, reverse=True) and len(result.alternatives) <= 3
    linked = {(e.entity_id, e.source) for e in result.evidence.linked_entities}
    assert ("ex:dog", "question") in linked
    assert any(source == "image" for _, source in linked)
    assert result.evidence.subgraph_nodes > 0 and result.evidence.subgraph_edges > 0
    json.dumps(result.to_dict())  # serialisable as is


def test_entity_answers_split_their_logit_into_named_terms(model: KGMM, model_dir,
                                                          tmp_path) -> None:
    vocabulary_answer = model.answer(_image(), "Is there a car?")
    assert vocabulary_answer.entity_id is None and vocabulary_answer.evidence.score_terms == []
    model = KGMM.load(model_dir, data_dir=tmp_path, freeze_gc=False)
    last = model.parts.vqa.reasoner.gate_head[-1]
    with torch.no_grad():  # the untrained gate otherwise prefers the words ("no")
        last.weight.zero_()
        last.bias.fill_(10.0)
    names = {*model.parts.vqa.graph_config.node_extra_names, "seed score"}
    assert len(names) == model.parts.vqa.graph_config.node_extra_dim + 1
    questions = ["What kind of thing is the dog?", "Which object is an animal?",
                 "What is the leftmost object?", "What kind of thing is the car?"]
    answers = [model.answer(_image(), q) for q in questions]
    entity_answers = [a for a in answers if a.entity_id is not None]
    assert len(entity_answers) == len(questions), [a.text for a in answers]
    for entity_answer in entity_answers:
        terms = entity_answer.evidence.score_terms
        assert terms[0][0] == "graph reasoning" and 1 <= len(terms) <= 4
        assert {name for name, _ in terms[1:]} <= names
        assert all(abs(value) >= 0.05 for _, value in terms[1:])
        magnitudes = [abs(value) for _, value in terms[1:]]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_every_image_form_and_the_batch_path_agree(model: KGMM, tmp_path) -> None:
    image = _image()
    path = tmp_path / "x.png"
    image.save(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    question = "How many animals are there?"
    texts = {model.answer(form, question).text
             for form in (image, path, buffer.getvalue(), np.asarray(image))}
    assert len(texts) == 1
    batch = model.answer_batch([(image, question), (image, "Is there a car?")])
    assert batch[0].text == texts.pop()
    assert batch[1].text == model.answer(image, "Is there a car?").text


def test_parser_runs_in_the_image_towers_inference_precision(model: KGMM) -> None:
    config = model.parts.image_encoder.config
    saved = config.inference_dtype
    try:
        config.inference_dtype = "float32"
        assert model._inference_parser() is model.parts.parser
        config.inference_dtype = "bfloat16"
        fast = model._inference_parser()
        assert fast is not model.parts.parser and fast.cell.weight.dtype == torch.bfloat16
        assert model._inference_parser() is fast  # made once
        with torch.no_grad():  # new weights: a new copy
            model.parts.parser.cell.bias.add_(0.0)
        assert model._inference_parser() is not fast
        assert model.parts.parser.cell.weight.dtype == torch.float32
    finally:
        config.inference_dtype = saved


def test_module_level_answer_uses_the_given_model(model: KGMM, model_dir) -> None:
    assert answer(_image(), "Is there a cat?", model=model).question == "Is there a cat?"
    assert answer(_image(), "Is there a cat?", model=model_dir).text == model.answer(
        _image(), "Is there a cat?").text


def test_bad_questions_and_images(model: KGMM, tmp_path) -> None:
    with pytest.raises(QuestionInputError, match="empty"):
        model.answer(_image(), "   ")
    with pytest.raises(QuestionInputError, match="10,000 characters; at most 1,000"):
        model.answer(_image(), "w" * 10_000)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ImageInputError, match=r"broken\.png"):
        model.answer(broken, "What is this?")
    unknown = model.answer(_image(), "Wubba lubba dub dub?")  # no word links: still answers
    assert isinstance(unknown.text, str)


def test_model_directory_errors(model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KGMM_HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("KGMM_MODEL", raising=False)
    with pytest.raises(ModelError, match="make demo"):
        KGMM.load()
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "kgmm_model.json").read_text())
    manifest["format_version"] = 99
    (copy / "kgmm_model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="format 99"):
        KGMM.load(copy)
    manifest["format_version"] = 1
    (copy / "kgmm_model.json").write_text(json.dumps(manifest))
    # a reasoner configuration from a newer kgmm: a ModelError naming the field
    vqa_config = json.loads((copy / "vqa" / "config.json").read_text())
    (copy / "vqa" / "config.json").write_text(json.dumps(
        {**vqa_config, "graph": {**vqa_config["graph"], "object_mentions": True}}))
    with pytest.raises(ModelError, match="object_mentions"):
        KGMM.load(copy)
    (copy / "vqa" / "config.json").write_text(json.dumps(vqa_config))
    shutil.rmtree(copy / "parser")
    with pytest.raises(ModelError, match="parser is missing"):
        KGMM.load(copy)
    other = toy_graph()
    other.triples.pop()
    with pytest.raises(SnapshotError, match="trained with KG"):
        KGMM.load(model_dir, kg=CompiledKG.build(other))


def test_cli_answer_records_the_question_for_inspection(model_dir, tmp_path) -> None:
    import subprocess
    import sys

    from kgmm.graph.stores.embedded import EmbeddedStore

    home = tmp_path / "home"
    store = EmbeddedStore(data_dir=home)
    store.import_data(toy_graph())
    store.close()
    image = tmp_path / "scene.png"
    _image().save(image)
    cli = [sys.executable, "-m", "kgmm.cli"]
    answered = subprocess.run([*cli, "answer", str(image), "What kind of thing is the dog?",
                               "--model", str(model_dir), "--record", "q-dog",
                               "--data-dir", str(home)],
                              capture_output=True, text=True, timeout=300)
    assert answered.returncode == 0, answered.stderr[-2000:]
    # KGMM.load gc.freeze()s the loaded objects and unfreezes them at exit: frozen objects are
    # never finalised, and extension modules (triton's, under transformers) then print leaks
    assert "leaked" not in answered.stderr, answered.stderr[-2000:]
    shown = subprocess.run([*cli, "inspect", "question", "q-dog", "--json",
                            "--data-dir", str(home)], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    found = json.loads(shown.stdout)
    assert found["question"]["text"] == "What kind of thing is the dog?"
    assert any(row.get("entity") == "ex:dog" or row.get("id") == "ex:dog"
               or "ex:dog" in json.dumps(row) for row in found["linked"])


def test_declared_answers_join_the_answer_space_without_retraining(model_dir, tmp_path) -> None:
    from kgmm.graph.errors import InputError
    from kgmm.pipeline import AnswerSpaceError
    from kgmm.reasoning.question_linking import find_mentions
    from kgmm.reasoning.scene_graph import build_graph

    loaded = KGMM.load(model_dir, data_dir=tmp_path, freeze_gc=False)
    assert loaded.answer_space == ()
    assert loaded.extend_answer_space(["ex:canine", "Fruit", "ex:canine"]) == [
        "ex:canine", "ex:fruit"]
    assert loaded.answer_space == ("ex:canine", "ex:fruit")
    assert loaded.extend_answer_space(["canine"]) == []  # already there
    kg = loaded.parts.kg
    assert loaded._name(kg.index_of("ex:fruit")) == "fruit"
    with pytest.raises(InputError, match="'no such label'"):
        loaded.extend_answer_space(["ex:dog", "no such label"])
    assert loaded.answer_space == ("ex:canine", "ex:fruit")  # unchanged by the refusal
    # the graphs the model builds now mark the declared labels: canine is the dog's most
    # specific answer-space ancestor
    config = loaded.parts.vqa.graph_config
    graph = build_graph(kg, find_mentions(kg, "What kind of thing is the dog?"), [],
                        loaded.parts.node_embeddings, config)
    row = graph.kg_index.tolist().index(kg.index_of("ex:canine"))
    column = config.answer_space_column
    assert graph.node_extra[row, column:column + 2].tolist() == [1.0, 1.0]
    assert loaded.answer(_image(), "What kind of thing is the dog?").text
    loaded.parts.vqa.config.graph = {**loaded.parts.vqa.config.graph,
                                     "answer_space_features": False}
    with pytest.raises(AnswerSpaceError, match="without answer-space features"):
        loaded.extend_answer_space(["ex:dog"])
