"""Workstation: where a pipeline run executes. The Step Functions definition, deployment to AWS
(or to an embedded moto server for the ``local`` backend, with Lambda invocations run by the real
handlers in child processes), IAM, the run lock, the Lambda zip, uploads and CloudWatch logs.
"""
