"""The inference pipeline: run request, Step Functions definition, and the Init / Inference /
Summarize step logic that the thin Lambda handlers in ``lambda/`` call.

Nothing here imports torch: this package is zipped into the Lambda functions.
"""
