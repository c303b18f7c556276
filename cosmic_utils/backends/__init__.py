"""Where a pipeline run executes: ``aws`` (a real account, deployed with boto3) or ``local``
(the very same deploy-and-run code pointed at an embedded moto server, with Lambda
invocations routed to the real handlers in child processes by :mod:`.moto_hook`).
"""
