"""The local AWS of the stack (infra/local/moto_stack.py): a moto server with template.yaml's resources, and
the environment that points a function at it (what handler.settings reads)."""

from __future__ import annotations

import json

import pytest

from handler.settings import Settings
from infra.local.moto_stack import CREDENTIALS, REGION, MotoStack, StackNames


def test_the_function_environment_is_what_the_functions_settings_read() -> None:
    stack = MotoStack(names=StackNames(dimension=512), port=5123)
    env = stack.function_env(MODEL_DIR="/models/m")
    settings = Settings.from_env(env)
    assert (settings.table_name, settings.model_dir) == ("clip-lambda-embeddings", "/models/m")
    assert (settings.vector_bucket, settings.vector_index) == ("clip-lambda-vectors", "images")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123" == env["AWS_ENDPOINT_URL_S3VECTORS"]
    assert env["ALLOWED_S3_BUCKETS"] == "clip-lambda-images" and env["EMBEDDING_DIM"] == "512"
    assert {k: env[k] for k in CREDENTIALS} == CREDENTIALS and env["AWS_DEFAULT_REGION"] == REGION
    plain = MotoStack(names=StackNames(vector_bucket="")).function_env(TABLE_NAME="other")
    assert "VECTOR_BUCKET" not in plain and "EMBEDDING_DIM" not in plain and plain["TABLE_NAME"] == "other"


def test_the_stack_holds_the_templates_resources_and_stops() -> None:
    names = StackNames(vector_bucket="", max_receive_count=2, visibility_timeout=7)
    with MotoStack(names=names).start() as stack:
        assert stack.endpoint.startswith("http://127.0.0.1:") and stack.port
        sqs = stack.client("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert (attrs["VisibilityTimeout"], redrive["maxReceiveCount"]) == ("7", 2)
        assert redrive["deadLetterTargetArn"].endswith(":clip-lambda-events-dlq") and stack.dlq_url
        notify = stack.client("s3").get_bucket_notification_configuration(Bucket=names.bucket)
        [queue] = notify["QueueConfigurations"]
        assert queue["QueueArn"] == stack.queue_arn
        assert set(queue["Events"]) == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
        table = stack.client("dynamodb").describe_table(TableName=names.table)["Table"]
        assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
        with pytest.raises(ValueError, match="needs the model's dimension"):
            stack.create_vector_index()  # StackNames.dimension unset
        proc = stack._proc
    assert proc is not None and proc.poll() is not None  # the moto server it started is gone
