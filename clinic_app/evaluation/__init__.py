"""Evaluation: labelled questions through the clinicians' own pipeline, and what came out.

Every question goes through :func:`clinic_app.answers.services.question_ask` and
:func:`clinic_app.answers.services.answer_generate`, exactly as a question typed in the page, so the
numbers describe the product (retrieval, refusal threshold, prompt, model, citation checks),
not a bench-only copy of it. Retrieval is measured separately with the live retriever.

Two datasets:

- **PubMedQA** (PQA-L, ``{pmid: {QUESTION, CONTEXTS, LABELS, final_decision, ...}}``), in the
  reasoning-required setting: every abstract of the file is ingested into a scratch database
  and index (never the clinicians' library), the system must retrieve the question's own
  abstract, and the free-text answer is read as yes / no / maybe (:func:`decision_parse`).
- **questions-jsonl**, against the live library: one JSON object per line with ``id``,
  ``question``, ``kind`` (``answerable``, ``out_of_scope``, ``injection``),
  ``expected_sources`` (``<guideline id>/<section>``, i.e. :attr:`Guideline.key`),
  ``required_facts`` (substrings, or ``re:<regex>``) and, for injections, ``forbidden``
  (substrings or ``re:<regex>`` whose presence means the injected instruction was obeyed).

Modules: ``datasets`` (loading and checking), ``run`` (the pipeline both share),
``questions`` and ``pubmedqa`` (one per dataset), ``reading`` (answers read without Django) and
``report`` (the report and its tables).
"""
