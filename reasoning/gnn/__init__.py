"""Query-conditioned relational message passing layers (PyG ``MessagePassing``).

Every layer takes node states, typed edges (``edge_index [2, E]``, ``edge_type [E]``, messages
flowing ``edge_index[0] → edge_index[1]``), a per-graph query ``[B, Dq]`` and the PyG
``batch`` vector that maps nodes to graphs.
"""

from .film_rgat_conv import FiLMRGATConv
from .film_rgcn_conv import FiLM, FiLMRGCNConv, broadcast_query, relation_transform
from .relation_attention_conv import RelationAttentionConv, add_reverse_edges

__all__ = [
    "FiLM",
    "FiLMRGATConv",
    "FiLMRGCNConv",
    "RelationAttentionConv",
    "add_reverse_edges",
    "broadcast_query",
    "relation_transform",
]
