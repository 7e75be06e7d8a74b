"""Image–text retrieval: a dual-tower first stage, an embedding index, and re-rankers.

* :mod:`.data` — retrieval splits (images, caption galleries, text queries with levels).
* :mod:`.features` — frozen-encoder feature tables (safetensors).
* :mod:`.dual` — the dual tower :math:`s(q, c) = \\cos(f_q(q), f_c(c))`, trained with InfoNCE
  and triplet alignment losses.
* :mod:`.index` — exact (matrix product) or FAISS embedding index, saved without pickle.
* :mod:`.cross` — cross-attention re-rankers (additive and transformer).
* :mod:`.linking` / :mod:`.kg_features` — entities of texts and images, and the KG features
  that join them (hypernym ancestry, typed paths, personalised PageRank, GNN embeddings).
* :mod:`.combiner` — the small learned model fusing first-stage scores and re-ranking inputs.
* :mod:`.engine` — candidate lists of whole splits, combiner fitting, evaluation.
* :mod:`.rerank` — re-ranking any candidate list, with evidence.
* :mod:`.model` / :mod:`.train` / :mod:`.report` — the retriever directory, its training,
  metrics files and tables.
* :mod:`.metrics` — R@K, MRR, nDCG@K.

The public entry points are in :mod:`kgmm.retrieval` (``kgmm.retrieve``, ``kgmm.rerank``,
``kgmm.Retriever``).
"""
