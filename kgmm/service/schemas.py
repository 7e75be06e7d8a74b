"""Request and response bodies of the HTTP service (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ProblemDetails(BaseModel):
    """An error, as RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI of the problem type (``/problems/<slug>`` here)")
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = Field(None, description="the input at fault, when there is one")


class ProblemTypeInfo(BaseModel):
    type: str
    slug: str
    title: str
    status: int
    description: str


# -- /answer -------------------------------------------------------------------------------
class AlternativeOut(BaseModel):
    text: str
    score: float
    entity_id: str | None = None


class LinkedEntityOut(BaseModel):
    entity_id: str
    label: str
    score: float
    source: str = Field(description="'question' or 'image'")
    span: str | None = None


class ScoredNode(BaseModel):
    id: str
    score: float


class ScoreTerm(BaseModel):
    name: str
    value: float


class EvidencePathOut(BaseModel):
    nodes: list[str]
    relations: list[str]
    score: float


class EvidenceOut(BaseModel):
    linked_entities: list[LinkedEntityOut]
    subgraph_nodes: int
    subgraph_edges: int
    top_nodes: list[ScoredNode]
    paths: list[EvidencePathOut]
    score_terms: list[ScoreTerm] = Field(
        default_factory=list,
        description="the answer's logit: graph reasoning + the largest feature terms")


class GraphNode(BaseModel):
    id: str
    label: str
    kind: Literal["question", "image", "object", "entity", "answer"]
    roles: list[str] = Field(default_factory=list,
                             description="answer, alternative, linked, path, top")
    score: float | None = None


class GraphEdge(BaseModel):
    id: str
    source: str
    target: str
    label: str
    kind: Literal["mention", "sees", "relation", "answer", "kg"] = Field(
        description="mention/sees: linking; relation: an evidence path; answer: question to "
                    "answer; kg: a KG edge between drawn entities")


class AnswerGraph(BaseModel):
    """Linked entities and evidence as nodes and edges, ready to draw."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]


class AnswerOut(BaseModel):
    text: str
    entity_id: str | None
    score: float
    alternatives: list[AlternativeOut]
    question: str
    evidence: EvidenceOut | None
    graph: AnswerGraph
    elapsed_ms: float


# -- /entities -----------------------------------------------------------------------------
class Neighbour(BaseModel):
    id: str
    label: str
    relation: str
    relation_label: str
    direction: Literal["out", "in"] = Field(description="out: entity -[relation]-> id")


class EntityOut(BaseModel):
    id: str
    label: str
    aliases: list[str]
    description: str
    types: list[str]
    properties: dict[str, Any]
    out_degree: int
    in_degree: int
    neighbours: list[Neighbour]
    truncated: bool = Field(description="true when the neighbour limit cut the list")


# -- /cypher -------------------------------------------------------------------------------
class CypherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000,
                       examples=["MATCH (e:Entity {id: $id}) RETURN e.label AS label"])
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="values reach the query only as parameters",
                                   examples=[{"id": "wn:dog.n.01"}])
    limit: int = Field(100, ge=1, le=1000, description="row limit")
    timeout_s: float = Field(10.0, gt=0, le=60, description="seconds before the query is stopped")


class CypherOut(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    backend: str
    notes: list[str] = Field(default_factory=list)


# -- /rerank -------------------------------------------------------------------------------
class CandidateIn(BaseModel):
    """A first-stage result: its id and score, and its caption (what the KG links)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    caption: str | None = Field(None, max_length=10_000)
    image_id: str | None = Field(None, description="passed through in the result's payload")
    score: float = Field(strict=True, allow_inf_nan=False)


class RerankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=1000, pattern=r"\S",
                       examples=["a picture of a rodent"])
    candidates: list[CandidateIn] = Field(max_length=1000)
    k: int = Field(10, ge=1, le=1000)
    method: Literal["kg", "cross", "cross+kg", "dual"] = Field(
        "kg", description="kg: the knowledge-graph re-ranker; dual: first stage only")


class RankedOut(BaseModel):
    """A re-ranked candidate (see ``kgmm.reasoning.retrieval.rerank.RankedCandidate``)."""

    model_config = ConfigDict(extra="allow")

    id: str | int
    score: float
    rank: int


class RerankOut(BaseModel):
    query: str
    method: str
    results: list[RankedOut]


# -- /healthz ------------------------------------------------------------------------------
class ModelInfo(BaseModel):
    path: str | None
    kg_content_hash: str
    entities: int
    relations: int


class StoreInfo(BaseModel):
    backend: str | None
    status: Literal["up", "down", "none"]
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelInfo | None
    store: StoreInfo
    version: str
