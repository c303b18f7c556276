"""cosmic_utils: redshift inference with pcm-AstroMAE, from real SDSS galaxies to serverless runs.

Each module holds one concern; see docs/architecture.md for the map. Modules that run inside
AWS Lambda (storage, partition format, request schema, ONNX engine, pipeline steps) never import
torch at module level, so the Lambda package can leave torch out.
"""

__version__ = "0.1.0"
