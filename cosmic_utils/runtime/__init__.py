"""What runs inside AWS Lambda, and nothing else: partition format, manifest, storage, preprocessing,
metrics, artifact reading, the run request, the ONNX engine with its accuracy gate, and the steps.

This folder is the Lambda zip (:mod:`cosmic_utils.cloud.lambda_zip`): it imports nothing of
``cosmic_utils`` outside itself; ``lint-imports`` enforces it (docs/architecture.md).
"""
