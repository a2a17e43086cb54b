"""Retrieval: turn guideline documents into searchable passages, and a question into evidence.

Plain Python: this package never imports Django. The pipeline, in order:

1. :mod:`retrieval.parsers` reads PDF, HTML, Markdown (:mod:`retrieval.markdown`), plain text,
   Meditron guidelines JSONL and PubMedQA JSON into documents of sections with their heading path;
2. :mod:`retrieval.chunking` splits sections into passages that fit the embedder's input;
3. :mod:`retrieval.embedder` turns passages and questions into normalised vectors;
4. :mod:`retrieval.index` stores vectors under stable passage ids in FAISS (exact or HNSW) and
   BM25 over the same passages (:mod:`retrieval.lexical`), saved atomically as one version;
5. :mod:`retrieval.search` ranks passages for a question, fusing dense and BM25 rankings, and
   reports a relevance score (the best dense cosine) for the no-evidence decision.
"""
