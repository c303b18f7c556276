"""What runs inside AWS Lambda, and nothing else: the partition format, manifest, storage,
preprocessing arrays, metrics, artifact reading, the run request, the ONNX engine with its
accuracy gate, and the Init / Inference / Summarize steps the thin handlers in ``lambda/`` call.

This package is the Lambda zip (:mod:`cosmic_utils.cloud.lambda_zip` packs exactly this folder).
It imports nothing of ``cosmic_utils`` outside itself and of third parties only numpy,
onnxruntime (+ onnx for int8 quantisation), boto3/botocore and pydantic (the request model);
``lint-imports`` enforces it (contracts in ``pyproject.toml``, see ``docs/architecture.md``).
"""
