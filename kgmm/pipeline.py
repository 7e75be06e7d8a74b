"""``KGMM``: the question-answering pipeline, and ``kgmm.answer(image, question)``.

One question flows as DESIGN.md draws it: the image encoder gives grid and pooled features;
the scene parser turns the grid into objects linked to KG entities; the question is linked to
KG entities by the lexicon (re-scored by sentence similarity); the KG around all linked
entities plus the objects becomes the reasoning graph; the fused question/image vector
conditions the reasoner; the answer comes back with its score, alternatives and evidence.

A model directory holds ``kgmm_model.json`` (format version, encoders, KG content hash), the
VQA model (``vqa/``), the scene parser (``parser/``) with its entity vocabulary, and the
compiled KG it was trained with (``kg/``). Nothing in it is pickled.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgmm.graph.errors import KGMMError, SnapshotError
from kgmm.graph.home import kgmm_home

MODEL_FORMAT_VERSION = 1
MODEL_FILE = "kgmm_model.json"


class ModelError(KGMMError):
    """A model directory that is missing, incomplete or from another version."""


class AnswerSpaceError(KGMMError, ValueError):
    """Answers declared to a model trained without the answer-space features."""


@dataclass(frozen=True)
class LinkedEntity:
    """An entity the question or the image was linked to."""

    entity_id: str
    label: str
    score: float
    source: str  # "question" or "image"
    span: str | None = None  # the question words, or the object position "x=0.21,y=0.40"
    object_index: int | None = None  # image links: the detected object k ("object#k" in paths)


@dataclass(frozen=True)
class EvidencePath:
    """A path through the reasoning graph from a linked entity or object to the answer."""

    nodes: list[str]  # entity ids, or "object#k" for detected objects
    relations: list[str]
    score: float

    def __str__(self) -> str:
        parts = [self.nodes[0]]
        for relation, node in zip(self.relations, self.nodes[1:], strict=True):
            parts.append(f"-[{relation}]->{node}")
        return "".join(parts)


@dataclass(frozen=True)
class Evidence:
    """Why the model answered what it did."""

    linked_entities: list[LinkedEntity]
    subgraph_nodes: int
    subgraph_edges: int
    top_nodes: list[tuple[str, float]]
    paths: list[EvidencePath]
    #: the answer node's score (a logit) split into the graph reasoning term and the largest
    #: terms of the query-chosen read of its own features (e.g. "largest x-rank of its
    #: objects" for "the rightmost object is a kind of what?"); empty for vocabulary answers
    score_terms: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Alternative:
    text: str
    score: float
    entity_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """``kgmm.answer``'s result."""

    text: str
    entity_id: str | None
    score: float
    alternatives: list[Alternative]
    evidence: Evidence | None = None
    question: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_model_path(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``$KGMM_MODEL`` if set, else ``<KGMM_HOME>/models/default``."""
    override = os.environ.get("KGMM_MODEL")
    return Path(override) if override else kgmm_home(data_dir) / "models" / "default"


def read_model_manifest(path: Path) -> dict[str, Any]:
    """The model's manifest, checked for presence, format version and parts."""
    from kgmm.reasoning.model_manifest import read_checked_manifest

    return read_checked_manifest(
        path, file_name=MODEL_FILE, format_version=MODEL_FORMAT_VERSION, kind="model",
        error=ModelError,
        not_found=f"no kgmm model at {path}. Train one with `make demo` or "
                  "`kgmm train --config FILE`, or point KGMM_MODEL at a model directory",
        version_hint=" — retrain the model with this version")


def check_kg_matches(manifest: dict[str, Any], kg: Any, where: Path) -> None:
    """Refuse a KG snapshot other than the one the model was trained with."""
    expected = manifest.get("kg_content_hash")
    if expected and kg.content_hash != expected:
        raise SnapshotError(
            f"{where}: the model was trained with KG {expected[:12]}, but the snapshot given is "
            f"{kg.content_hash[:12]}; use the model's own kg/ or retrain")


class _LRU:
    """A small thread-safe LRU cache (image features by content hash)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            return None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def image_key(image: Any) -> str:
    """Content hash of an RGB PIL image (features are cached per image)."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}".encode())
    return digest.hexdigest()


@dataclass
class PipelineParts:
    """What a loaded model is made of (kept loose so the parts can evolve separately)."""

    kg: Any
    text_encoder: Any
    image_encoder: Any
    parser: Any
    parser_entities: list[int]
    vqa: Any
    node_embeddings: Any
    manifest: dict[str, Any] = field(default_factory=dict)


def save_model(directory: str | os.PathLike[str], *, kg: Any, vqa: Any, parser: Any,
               parser_entities: list[str], surface_forms: dict[str, str],
               text_encoder: str = "minilm", image_encoder: str = "efficientnet-lite0",
               image_size: int = 224, metrics: dict[str, Any] | None = None,
               trained_image_encoder: Any = None, crop_pct: float = 1.0,
               perception_domain: Any = None, baseline: Any = None) -> Path:
    """Write a model directory atomically (aside, then renamed over any previous one).

    ``trained_image_encoder``: an image tower whose weights were trained (e.g. ``small_cnn``)
    is saved into ``image_encoder/``; frozen pretrained towers are referenced by name.
    ``perception_domain``: the parser's picture style
    (:class:`~kgmm.reasoning.perception_domain.PerceptionDomain`). ``baseline``: the no-KG
    VQA model trained beside it, saved as bare weights in ``baseline/`` (for
    ``kgmm eval vqa --baseline MODEL/baseline``)."""
    from kgmm.graph.atomic_dir import written_aside

    target = Path(directory)
    with written_aside(target) as tmp:
        vqa.save_pretrained(tmp / "vqa")
        parser.save_pretrained(tmp / "parser")
        kg.save(tmp / "kg")
        parts = ["vqa", "parser", "kg"]
        if baseline is not None:
            baseline.save_pretrained(tmp / "baseline")
            parts.append("baseline")
        if trained_image_encoder is not None:
            trained_image_encoder.save_pretrained(tmp / "image_encoder")
            image_encoder = "image_encoder"
            parts.append("image_encoder")
        manifest = {
            "format_version": MODEL_FORMAT_VERSION, "kg_content_hash": kg.content_hash,
            "text_encoder": text_encoder, "image_encoder": image_encoder,
            "image_size": image_size, "crop_pct": crop_pct, "parts": parts,
            "parser_entities": parser_entities, "surface_forms": surface_forms,
            "metrics": metrics or {},
        }
        if perception_domain is not None:
            manifest["perception_domain"] = perception_domain.to_dict()
        (tmp / MODEL_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return target


class KGMM:
    """A loaded model: ``answer(image, question)`` and ``answer_batch(pairs)``."""

    def __init__(self, parts: PipelineParts, path: Path | None = None) -> None:
        self.parts = parts
        self.path = path
        self._features = _LRU(256)
        self._entity_matrix: Any = None
        manifest = parts.manifest
        self._domain = None
        if "perception_domain" in manifest:
            from kgmm.reasoning.perception_domain import PerceptionDomain

            self._domain = PerceptionDomain.from_dict(manifest["perception_domain"])
        kg = parts.kg
        self._surface = {kg.find_index(e): t for e, t in manifest.get("surface_forms", {}).items()
                         if kg.find_index(e) is not None}

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(cls, path_or_name: str | os.PathLike[str] | None = None, *,
             data_dir: str | os.PathLike[str] | None = None, kg: Any = None,
             freeze_gc: bool = True) -> KGMM:
        """Load a model directory (default: ``$KGMM_MODEL`` or ``<KGMM_HOME>/models/default``;
        a bare name means ``<KGMM_HOME>/models/<name>``). ``kg`` overrides the model's own
        snapshot and must have the same content hash.

        ``freeze_gc``: move the objects alive after loading (the KG's ~5·10⁵ labels, ids and
        index entries) to the cyclic collector's permanent generation (``gc.freeze()``), so
        that a full collection no longer walks them: one costs ~0.1 s on a WordNet-sized KG
        and otherwise lands on some random ``answer`` call. They are still freed by reference
        counting; only cycles among them would outlive the model."""
        from kgmm.graph.compiled import CompiledKG
        from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
        from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
        from kgmm.reasoning.scene_parser import SceneParser
        from kgmm.reasoning.vqa_model import VQAModel

        if path_or_name is None:
            path = default_model_path(data_dir)
        else:
            path = Path(path_or_name)
            if not path.exists() and os.sep not in str(path_or_name):
                path = kgmm_home(data_dir) / "models" / str(path_or_name)
        manifest = read_model_manifest(path)
        kg = kg if kg is not None else CompiledKG.load(path / "kg")
        check_kg_matches(manifest, kg, path)
        text = build_text_encoder(manifest.get("text_encoder", "minilm"))
        image_name = manifest.get("image_encoder", "efficientnet-lite0")
        if image_name == "image_encoder":  # trained weights saved with the model
            image_name = str(path / "image_encoder")
        image = build_image_encoder(image_name, image_size=manifest.get("image_size", 224),
                                    crop_pct=manifest.get("crop_pct", 1.0))
        try:
            vqa = VQAModel.from_pretrained(path / "vqa")
            parser = SceneParser.from_pretrained(path / "parser")
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load the model weights ({exc})") from None
        entities = [kg.index_of(e) for e in manifest.get("parser_entities", [])
                    if kg.find_index(e) is not None]
        cache = NodeEmbeddingCache(kg, text, encoder_key=manifest.get("text_encoder", "minilm"),
                                   cache_dir=kgmm_home(data_dir) / "cache")
        parts = PipelineParts(kg, text, image, parser, entities, vqa, cache, manifest)
        model = cls(parts, path)
        if freeze_gc:
            _freeze_gc()
        return model

    # -- the answer space --------------------------------------------------------------
    @property
    def answer_space(self) -> tuple[str, ...]:
        """Entity ids the reasoner treats as answer labels (its training answers plus any
        declared ones; empty for models trained without the answer-space features)."""
        return tuple(self.parts.vqa.config.graph.get("answer_space", ()))

    def extend_answer_space(self, entries: Iterable[str]) -> list[str]:
        """Declare answer labels the model never saw as answers, without retraining.

        Each entry is an entity id (``wn:rodent.n.01``) or a name, resolved to the KG's first
        sense of it (``"musical instrument"``); a name becomes that entity's answer text. The
        reasoner reads the answer space as node features (whether a node is an answer-space
        ancestor of a linked entity, and how specific among them), so "what kind of thing is
        the hamster?" can come back as *rodent* once *rodent* is declared. Returns the ids
        added.

        Raises:
            AnswerSpaceError: the model has no answer-space features.
            InputError: an entry is not in the KG (nothing is changed then).
        """
        graph = self.parts.vqa.config.graph
        if not graph.get("answer_space_features"):
            raise AnswerSpaceError(f"{self.path}: this model was trained without answer-space "
                                   "features; retrain it to declare answers")
        from kgmm.reasoning.answer_space import resolve_declared

        declared = resolve_declared(self.parts.kg, entries)
        known = set(self.answer_space)
        added = sorted({d.entity_id for d in declared} - known)
        for d in declared:
            if d.name and d.index not in self._surface:
                self._surface[d.index] = d.name
        self.parts.vqa.config.graph = {**graph, "answer_space": sorted(known | set(added))}
        return added

    # -- answering ---------------------------------------------------------------------
    def _image_features(self, images: list[Any]) -> list[tuple[Any, list[Any]]]:
        """(pooled vector, object observations) of each RGB image, cached by content; the
        images not in the cache go through the encoder and the parser as one batch."""
        import torch

        from kgmm.reasoning.scene_graph import observations_from_detections

        keys = [image_key(image) for image in images]
        results: list[Any] = [self._features.get(key) for key in keys]
        todo: dict[str, int] = {}
        for i, (key, result) in enumerate(zip(keys, results, strict=True)):
            if result is None and key not in todo:
                todo[key] = i
        if not todo:
            return results
        p = self.parts
        chunk = list(todo.values())
        fresh: dict[str, tuple[Any, list[Any]]] = {}
        with torch.no_grad():
            features = p.image_encoder.encode([images[i] for i in chunk])
        if self._entity_matrix is None:
            self._entity_matrix = p.node_embeddings(p.parser_entities)
        ids = [str(i) for i in p.parser_entities]
        # only the detected cells go through the embedding head and the linking
        detections = self._inference_parser().parse(features, self._entity_matrix, ids)
        for row, key in enumerate(todo):
            pooled = features.pooled[row].float()
            logits = features.logits[row:row + 1] if features.logits is not None else None
            if self._domain is not None and not self._domain.contains(pooled):
                observations = self._imagenet_observations(logits)
            else:
                observations = observations_from_detections(detections[row])
                if not observations:
                    observations = self._imagenet_observations(logits)
            fresh[key] = (pooled, observations)
            self._features.put(key, fresh[key])
        return [results[i] if results[i] is not None else fresh[key]
                for i, key in enumerate(keys)]

    def _inference_parser(self) -> Any:
        """The scene parser in the image tower's inference precision (bfloat16 where the
        hardware computes it natively, see :mod:`kgmm.reasoning.encoders.precision`)."""
        from kgmm.reasoning.encoders.precision import resolve_inference_dtype

        parser = self.parts.parser
        device = next(parser.parameters()).device
        return parser.inference_copy(
            resolve_inference_dtype(self.parts.image_encoder.config.inference_dtype, device))

    def _imagenet_observations(self, logits: Any) -> list[Any]:
        """The fallback when the scene parser sees no object (another picture style, a real
        photograph): the image encoder's ImageNet classes, joined to KG entities, as one
        whole-image object (see :mod:`kgmm.reasoning.imagenet_linking`)."""
        from kgmm.reasoning.imagenet_linking import (
            imagenet_candidates,
            imagenet_observation,
            link_imagenet_classes,
        )

        if logits is None or logits.shape[-1] != 1000:
            return []
        candidates = imagenet_candidates(logits[0], link_imagenet_classes(self.parts.kg))
        if not candidates:
            return []
        return [imagenet_observation(candidates, self.parts.node_embeddings)]

    def answer(self, image: Any, question: str, *, top_k: int = 5,
               evidence: bool = True) -> Answer:
        """Answer one question about one image (path, bytes, PIL image or numpy array)."""
        return self.answer_batch([(image, question)], top_k=top_k, evidence=evidence)[0]

    def answer_batch(self, pairs: list[tuple[Any, str]], *, top_k: int = 5,
                     evidence: bool = False) -> list[Answer]:
        """Answer many (image, question) pairs in one forward pass of the reasoner."""
        import torch

        from kgmm.reasoning.inputs import check_question, load_image
        from kgmm.reasoning.question_linking import find_mentions, rescore_mentions
        from kgmm.reasoning.scene_graph import build_graph
        from kgmm.reasoning.vqa_data import to_data

        p = self.parts
        questions = [check_question(q) for _, q in pairs]
        images = [load_image(img) for img, _ in pairs]
        text_tokens = text_mask = None
        if p.vqa.uses_tokens:
            from kgmm.reasoning.vqa_data import pad_tokens

            pooled_text, tokens = p.text_encoder.question_features(questions)
            text_vecs = pooled_text.float()
            text_tokens, text_mask = pad_tokens(tokens)
        else:
            text_vecs = p.text_encoder.embed(questions).float()
        graphs, vectors, linked = [], [], []
        graph_config = p.vqa.graph_config
        for (pooled, observations), question, text_vec in zip(
                self._image_features(images), questions, text_vecs, strict=True):
            mentions = rescore_mentions(find_mentions(p.kg, question), text_vec,
                                        p.node_embeddings)
            graphs.append(build_graph(p.kg, mentions, observations, p.node_embeddings,
                                      graph_config))
            vectors.append(pooled)
            linked.append(self._linked(mentions, observations))
        with torch.no_grad():
            result = p.vqa(torch.stack(vectors), text_vecs,
                           [to_data(g) for g in graphs] if p.vqa.config.use_kg else None,
                           text_tokens=text_tokens, text_mask=text_mask)
        ranked = p.vqa.decode(result, graphs, self._name, k=top_k)
        answers = []
        for i, options in enumerate(ranked):
            if not options:
                options = [("", 0.0, None)]
            text, score, index = options[0]
            ev = self._evidence(result, graphs, i, index, linked[i]) if evidence else None
            answers.append(Answer(
                text=text, entity_id=p.kg.id_of(index) if index is not None else None,
                score=float(score),
                alternatives=[Alternative(t, float(s), p.kg.id_of(x) if x is not None else None)
                              for t, s, x in options[1:]],
                evidence=ev, question=questions[i]))
        return answers

    def _name(self, index: int) -> str:
        return self._surface.get(index) or self.parts.kg.label(index).lower()

    def _linked(self, mentions: list[Any], observations: list[Any]) -> list[LinkedEntity]:
        kg = self.parts.kg
        out = []
        for mention in mentions:
            for index, score in zip(mention.candidates, mention.scores, strict=True):
                out.append(LinkedEntity(kg.id_of(index), kg.label(index), float(score),
                                        "question", mention.text))
        for slot, obs in enumerate(observations):
            for index, prob in obs.candidates[:1]:
                out.append(LinkedEntity(kg.id_of(index), kg.label(index), float(prob), "image",
                                        f"x={obs.x:.2f},y={obs.y:.2f}", object_index=slot))
        return out

    def _evidence(self, result: dict[str, Any], graphs: list[Any], i: int,
                  answer_index: int | None, linked: list[LinkedEntity]) -> Evidence:
        from kgmm.reasoning.evidence import graph_evidence
        from kgmm.reasoning.scene_graph import relation_names

        graph = graphs[i]
        kg = self.parts.kg
        names = relation_names(kg)
        kg_index = graph.kg_index.tolist()

        def node_name(local: int) -> str:
            return kg.id_of(kg_index[local]) if kg_index[local] >= 0 else \
                f"object#{int(graph.object_slot[local])}"

        paths: list[EvidencePath] = []
        top: list[tuple[str, float]] = []
        terms: list[tuple[str, float]] = []
        if "output" in result and answer_index is not None and answer_index in kg_index:
            local = kg_index.index(answer_index)
            ev = graph_evidence(result["output"], result["batch"], i, local)
            top = [(node_name(n), float(s)) for n, s in ev.top_nodes]
            for path in ev.paths:
                rels = [names[r] + ("⁻¹" if rev else "")
                        for r, rev in zip(path.relations, path.reversed, strict=True)]
                paths.append(EvidencePath([node_name(n) for n in path.nodes], rels,
                                          float(path.score)))
            terms = self._score_terms(result, i, local)
        return Evidence(linked_entities=linked, subgraph_nodes=graph.num_nodes,
                        subgraph_edges=int(graph.edge_index.shape[1]), top_nodes=top,
                        paths=paths, score_terms=terms)

    def _score_terms(self, result: dict[str, Any], i: int, local: int,
                     most: int = 3) -> list[tuple[str, float]]:
        """The answer node's logit as ``graph reasoning`` + the ``most`` largest feature-score
        terms (by magnitude, at least 0.05); see :attr:`Evidence.score_terms`."""
        output = result["output"]
        if output.feature_terms is None:
            return []
        node = int(result["batch"].ptr[i]) + local
        row = output.feature_terms[node].tolist()
        names = [*self.parts.vqa.graph_config.node_extra_names, "seed score"]
        rest = float(output.node_logits[node]) - sum(row)
        ranked = sorted(range(len(row)), key=lambda j: -abs(row[j]))[:most]
        return [("graph reasoning", rest)] + [(names[j], row[j]) for j in ranked
                                              if abs(row[j]) >= 0.05]


def _freeze_gc() -> None:
    """``gc.freeze()`` the objects alive now, and unfreeze them when the interpreter exits
    (frozen objects are never finalised: extension modules would report them as leaks)."""
    global _UNFREEZE_REGISTERED
    gc.collect()
    gc.freeze()
    if not _UNFREEZE_REGISTERED:
        atexit.register(gc.unfreeze)
        _UNFREEZE_REGISTERED = True


_UNFREEZE_REGISTERED = False
_LOADED: dict[str, KGMM] = {}
_LOAD_LOCK = threading.Lock()


def answer(image: Any, question: str, *, model: str | os.PathLike[str] | KGMM | None = None,
           top_k: int = 5) -> Answer:
    """Answer a question about an image with evidence (see :class:`KGMM`).

    ``model`` is a loaded :class:`KGMM`, a model directory or name, or None for the default
    model (``$KGMM_MODEL``, else ``<KGMM_HOME>/models/default``); loaded models are reused.
    """
    if isinstance(model, KGMM):
        return model.answer(image, question, top_k=top_k)
    key = str(model) if model is not None else str(default_model_path())
    with _LOAD_LOCK:
        loaded = _LOADED.get(key)
        if loaded is None:
            loaded = _LOADED[key] = KGMM.load(model)
    return loaded.answer(image, question, top_k=top_k)
