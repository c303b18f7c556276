"""Init / Inference / Summarize: the logic behind the three Lambda handlers, one module per step.

The same functions run on AWS and on the local backend (docs/pipeline.md); shared parts are in
:mod:`.common`. Nothing is imported here, so a Lambda imports only its own step.
"""
