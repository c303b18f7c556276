"""Init / Inference / Summarize: the logic behind the three Lambda handlers, one module per step.

The handlers in ``lambda/*/handler.py`` only parse the event and call
:func:`.init.init_step`, :func:`.inference.inference_step` and :func:`.summarize.summarize_step`.
The same functions run on AWS and on the local backend (in child processes that moto's Lambda
invocation is routed to), so both backends share every line that decides what a run did.
What they share (failure classes, constants) is :mod:`.common`. Nothing is imported here, so a
Lambda imports only its own step (Init and Summarize have no numpy or onnxruntime).
"""
