"""Inference: Meditron-style prompting, generation backends and answer checks.

Plain Python: this package never imports Django, so it can be tested, benchmarked and reused
on its own. Public entry points:

- :class:`inference.types.GenerationRequest` and the :class:`inference.backends.base.Backend`
  protocol (one method, ``stream``);
- :func:`inference.backends.load_backend` picks a backend by name;
- :mod:`inference.prompts` builds the grounded prompt within the model's context;
- :mod:`inference.citations` parses and checks the citations of a finished answer.
"""
