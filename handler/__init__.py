"""clip-lambda functions: ``handler.s3`` (S3 uploads → DynamoDB items) and ``handler.api`` (HTTP API).

Both are thin: parse the event (Powertools data classes) → the engine from ``layer`` → the DynamoDB sink.
Everything built once per container (engine, boto3 clients) lives in ``handler.runtime``.
"""
