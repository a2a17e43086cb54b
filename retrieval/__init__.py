"""Retrieval: turn guideline documents into searchable passages, and a question into evidence.

Plain Python: this package never imports Django. The pipeline, in order:

1. :mod:`retrieval.markdown` parses a document into sections with their heading path;
2. :mod:`retrieval.chunking` splits sections into passages that fit the embedder's input;
3. :mod:`retrieval.embedder` turns passages and questions into normalised vectors;
4. :mod:`retrieval.index` stores vectors under stable passage ids in FAISS, saved atomically;
5. :mod:`retrieval.search` ranks passages for a question and reports a relevance score.
"""
