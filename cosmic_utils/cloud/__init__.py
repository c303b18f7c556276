"""Workstation: where a pipeline run executes: the Step Functions definition, deployment to AWS or to
an embedded moto server (the ``local`` backend), IAM, the run lock, the Lambda zip, uploads, logs."""
