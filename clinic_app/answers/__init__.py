"""The path of a question: asking (limits, safety gate, threads), retrieval and the evidence
block, generation and its checks, streaming with snapshots, the websocket consumer, the answer
task, the clinician's pages and API, and feedback on answers.

Modules: ``services`` (ask, generate, cancel), ``selectors`` (read side and payloads),
``contracts`` (the JSON shapes the browser receives), ``streaming`` and ``snapshots``,
``consumers`` (websocket), ``tasks`` (Celery), ``views``, ``feedback``, ``identifiers``.
"""
