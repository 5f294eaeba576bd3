"""template.yaml and events/: linted by `sam validate --lint` and cfn-lint, and checked for the properties the
issue asks for. No Docker engine needed: these always run."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from PIL import Image
from samcli.yamlhelper import yaml_parse  # parses the short-form intrinsics (!Ref, !Sub, ...)

from infra.local.api_gateway import TEMPLATE_ROUTES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not installed: pip install -e '.[dev]'")
    return found


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
    return env


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


# ------------------------------------------------------------------------------------------------ linters
def run_linter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=300, check=False)


def test_sam_validate_lint() -> None:
    proc = run_linter(tool("sam"), "validate", "--lint", "--template-file", str(TEMPLATE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


def test_cfn_lint_clean() -> None:
    proc = run_linter(tool("cfn-lint"), str(TEMPLATE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


# ----------------------------------------------------------------------------------------------- functions
def test_both_functions_share_one_image_with_different_commands(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Serverless::Function")
    assert set(functions) == {"S3Function", "ApiFunction"}
    commands = {name: f["Properties"]["ImageConfig"]["Command"] for name, f in functions.items()}
    assert commands == {
        "S3Function": ["handler.s3.lambda_handler"],
        "ApiFunction": ["handler.api.lambda_handler"],
    }
    build = [{k: v for k, v in f["Metadata"].items() if k != "checkov"} for f in functions.values()]
    assert build[0] == build[1], "one Dockerfile, context and build args for both functions"
    metadata = build
    assert metadata[0]["Dockerfile"] == "infra/image/Dockerfile"
    assert (ROOT / metadata[0]["DockerContext"] / metadata[0]["Dockerfile"]).is_file()
    for f in functions.values():
        props = f["Properties"]
        assert props["PackageType"] == "Image"
        for key in ("MemorySize", "Timeout", "ReservedConcurrentExecutions"):
            assert key in props, key
        assert "LogGroup" in props["LoggingConfig"]


def test_parameters_have_reasoned_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    for name in (
        "S3FunctionMemorySize",
        "ApiFunctionMemorySize",
        "S3FunctionTimeout",
        "ApiFunctionTimeout",
        "S3ReservedConcurrency",
        "ApiReservedConcurrency",
        "LogRetentionInDays",
        "ApiAuth",
    ):
        assert "Default" in params[name], name
        assert len(params[name].get("Description", "")) > 20, f"{name}: say why"
    assert params["ApiAuth"]["Default"] == "AWS_IAM"
    assert 1024 <= int(params["S3FunctionMemorySize"]["Default"]) <= 10240


def test_architecture_is_a_parameter_of_both_functions(template: dict[str, Any]) -> None:
    param = template["Parameters"]["Architecture"]
    assert (param["Default"], param["AllowedValues"]) == ("x86_64", ["x86_64", "arm64"])
    assert "estimated" in param["Description"] and "measured" in param["Description"]
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]
    for fn in of_type(template["Resources"], "AWS::Serverless::Function").values():
        assert "Architectures" not in fn["Properties"], "the global decides for both"


def test_api_reads_only_the_images_bucket_and_public_apis_do_not_store(template: dict[str, Any]) -> None:
    env = template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ALLOWED_S3_BUCKETS"] == {"Ref": "ImagesBucket"}
    assert env["API_ALLOW_STORE"] == {"Fn::If": ["ApiStoreOff", "false", "true"]}
    conditions = template["Conditions"]
    assert conditions["IsPublicApi"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "NONE"]}
    assert {"Fn::And": [{"Fn::Equals": [{"Ref": "ApiAllowStore"}, "auto"]}, {"Condition": "IsPublicApi"}]} in (
        conditions["ApiStoreOff"]["Fn::Or"]
    )
    assert template["Parameters"]["ApiAllowStore"]["Default"] == "auto"


def test_api_stage_writes_access_logs(resources: dict[str, Any]) -> None:
    settings = resources["HttpApiStage"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    assert "$context.identity.sourceIp" in settings["Format"] and "$context.status" in settings["Format"]


def test_sqs_event_source_reports_batch_item_failures(resources: dict[str, Any]) -> None:
    event = resources["S3Function"]["Properties"]["Events"]["ImagesQueue"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["ImagesQueue", "Arn"]}


# ----------------------------------------------------------------------------------------------- queueing
def test_queue_has_dead_letter_queue_and_alarm(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """The values the README states: 5 receives, then the DLQ, kept 14 days, and an alarm on any message."""
    params = template["Parameters"]
    redrive = resources["ImagesQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ImagesDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"} and params["MaxReceiveCount"]["Default"] == 5
    assert resources["ImagesDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    (alarm,) = of_type(resources, "AWS::CloudWatch::Alarm").values()
    props = alarm["Properties"]
    assert {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ImagesDeadLetterQueue", "QueueName"]}} in props["Dimensions"]
    assert (props["MetricName"], props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == (
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        "GreaterThanThreshold",
        0,
    )  # any message at all
    event = resources["S3Function"]["Properties"]["Events"]["ImagesQueue"]["Properties"]
    assert event["BatchSize"] == {"Ref": "S3BatchSize"} and params["S3BatchSize"]["Default"] == 10
    assert params["S3BatchSize"]["MaxValue"] == 10


def refs(node: Any) -> set[str]:
    """Logical ids a template node refers to (Ref, GetAtt, ${X} / ${X.Attr} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if isinstance(value, list):
                    found |= refs(value[1])
            else:
                found |= refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= refs(item)
    return found


def test_bucket_notifies_queue_without_a_dependency_cycle(resources: dict[str, Any]) -> None:
    bucket = resources["ImagesBucket"]
    queues = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert {q["Event"] for q in queues} == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}
    assert bucket["DependsOn"] == "ImagesQueuePolicy"
    policy = resources["ImagesQueuePolicy"]
    assert "ImagesBucket" not in refs(policy), "the queue policy must not refer to the bucket (cycle)"
    # ... yet it names exactly this stack's bucket, by the same deterministic name.
    statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
    source_arn = statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn[0].endswith(bucket["Properties"]["BucketName"]["Fn::Sub"][0])
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"


def test_table_on_demand_pitr_encrypted(resources: dict[str, Any]) -> None:
    props = resources["EmbeddingsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


# ----------------------------------------------------------------------------------------------------- API
def test_http_api_routes_use_iam_auth_by_default(template: dict[str, Any], resources: dict[str, Any]) -> None:
    routes = of_type(resources, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == set(TEMPLATE_ROUTES)  # as the local front
    for route in routes.values():
        assert route["Properties"]["AuthorizationType"] == {"Ref": "ApiAuth"}
    assert template["Parameters"]["ApiAuth"]["Default"] == "AWS_IAM"
    assert resources["HttpApi"]["Properties"]["ProtocolType"] == "HTTP"
    permission = resources["ApiInvokePermission"]["Properties"]
    assert "HttpApi" in refs(permission["SourceArn"]), "only this API may invoke the function"


# ------------------------------------------------------------------------------------------ least privilege
def resolve(node: Any, conditions: dict[str, bool]) -> Any:
    """A template node with every ``Fn::If`` decided by ``conditions`` and ``AWS::NoValue`` dropped."""
    none = {"Ref": "AWS::NoValue"}
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return resolve(yes if conditions[name] else no, conditions)
        return {k: r for k, v in node.items() if (r := resolve(v, conditions)) != none}
    if isinstance(node, list):
        return [r for v in node if (r := resolve(v, conditions)) != none]
    return node


DEFAULTS = {"HasVectorIndex": True}  # the conditions of the roles' grants, as the default parameters set them


def statements(resources: dict[str, Any], role: str, conditions: dict[str, bool] = DEFAULTS) -> list[dict[str, Any]]:
    policies = resolve(resources[role]["Properties"]["Policies"], conditions)
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    act = statement["Action"]
    return [act] if isinstance(act, str) else act


_XRAY = {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
_BUCKET, _TABLE = frozenset({"ImagesBucket"}), frozenset({"EmbeddingsTable"})
_INDEX = frozenset({"EmbeddingsIndex"})
# The vector index's grants (VectorIndex=s3vectors): the S3 function follows the table into the index (and
# reads it to repair a duplicate); the API searches it (a filtered query returning metadata needs GetVectors).
INDEX_GRANTS: dict[str, set[Any]] = {
    "S3FunctionRole": {(f"s3vectors:{verb}", _INDEX) for verb in ("PutVectors", "DeleteVectors", "GetVectors")},
    "ApiFunctionRole": {(f"s3vectors:{verb}", _INDEX) for verb in ("QueryVectors", "GetVectors")},
}
# Each role's grants, exactly (action, resources): a new action or a widened resource fails the test.
EXACT_GRANTS: dict[str, set[Any]] = {
    "S3FunctionRole": {
        *_XRAY,
        ("logs:CreateLogStream", frozenset({"S3FunctionLogGroup"})),
        ("logs:PutLogEvents", frozenset({"S3FunctionLogGroup"})),
        ("s3:GetObject", _BUCKET),
        ("s3:GetObjectVersion", _BUCKET),
        ("s3:ListBucket", _BUCKET),
        ("dynamodb:GetItem", _TABLE),
        ("dynamodb:PutItem", _TABLE),
        ("dynamodb:DeleteItem", _TABLE),
        *INDEX_GRANTS["S3FunctionRole"],
        *{
            (f"sqs:{verb}", frozenset({"ImagesQueue"}))
            for verb in ("ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes")
        },
    },
    "ApiFunctionRole": {
        *_XRAY,
        ("logs:CreateLogStream", frozenset({"ApiFunctionLogGroup"})),
        ("logs:PutLogEvents", frozenset({"ApiFunctionLogGroup"})),
        ("s3:GetObject", _BUCKET),
        ("s3:GetObjectVersion", _BUCKET),
        ("s3:ListBucket", _BUCKET),
        ("dynamodb:GetItem", _TABLE),
        ("dynamodb:PutItem", _TABLE),
        *INDEX_GRANTS["ApiFunctionRole"],
    },
}


@pytest.mark.parametrize("role", ["S3FunctionRole", "ApiFunctionRole"])
def test_roles_are_least_privilege(resources: dict[str, Any], role: str) -> None:
    assert "ManagedPolicyArns" not in resources[role]["Properties"], "managed policies grant Resource: *"
    for statement in statements(resources, role):
        assert statement["Effect"] == "Allow"
        if statement["Resource"] == "*":  # only X-Ray's writes, which have no resource-level permissions
            assert set(actions(statement)) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, statement
            continue
        for action in actions(statement):
            assert "*" not in action, action
            service, verb = action.split(":")
            target = refs(statement["Resource"])
            if service == "s3":
                assert verb in {"GetObject", "GetObjectVersion", "ListBucket"}, action  # read only
                assert target == {"ImagesBucket"}
            elif service == "dynamodb":
                assert verb in {"GetItem", "PutItem", "DeleteItem"}, action
                assert target == {"EmbeddingsTable"}
            elif service == "sqs":
                assert role == "S3FunctionRole"
                consume = {"ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes"}
                assert verb in consume, action
                assert target == {"ImagesQueue"}  # consume only the queue (not even the DLQ)
            elif service == "logs":
                assert verb in {"CreateLogStream", "PutLogEvents"}
                assert len(target) == 1 and next(iter(target)).endswith("LogGroup")
            elif service == "s3vectors":
                assert statement["Resource"] == {"Fn::GetAtt": ["EmbeddingsIndex", "IndexArn"]}  # that index only
            else:
                pytest.fail(f"unexpected action {action}")
    granted = {(a, frozenset(refs(s["Resource"])) if s["Resource"] != "*" else "*") for s in statements(resources, role)
               for a in actions(s)}  # fmt: skip
    assert granted == EXACT_GRANTS[role]
    fn = "S3Function" if role == "S3FunctionRole" else "ApiFunction"
    assert resources[fn]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert "Policies" not in resources[fn]["Properties"], "SAM Policies would add managed policies"


@pytest.mark.parametrize("role", ["S3FunctionRole", "ApiFunctionRole"])
def test_without_a_vector_index_no_role_touches_s3vectors(resources: dict[str, Any], role: str) -> None:
    """VectorIndex=none: the same grants less the index's, and no vector bucket or index at all."""
    granted = {(a, frozenset(refs(s["Resource"])) if s["Resource"] != "*" else "*")
               for s in statements(resources, role, {"HasVectorIndex": False}) for a in actions(s)}  # fmt: skip
    assert granted == EXACT_GRANTS[role] - INDEX_GRANTS[role]


def test_the_vector_index_is_the_one_the_code_writes(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """512-d float32 cosine, encrypted, the non-filterable keys of handler.vector_index; only with
    VectorIndex=s3vectors (the default), and both functions are told its names."""
    from handler import vector_index

    param = template["Parameters"]["VectorIndex"]
    assert (param["Default"], param["AllowedValues"]) == ("s3vectors", ["s3vectors", "none"])
    assert template["Conditions"]["HasVectorIndex"] == {"Fn::Equals": [{"Ref": "VectorIndex"}, "s3vectors"]}
    bucket, index = resources["VectorBucket"], resources["EmbeddingsIndex"]
    assert bucket["Type"] == "AWS::S3Vectors::VectorBucket" and index["Type"] == "AWS::S3Vectors::Index"
    assert bucket["Condition"] == index["Condition"] == "HasVectorIndex"
    props = index["Properties"]
    shape = (props["DataType"], props["Dimension"], props["DistanceMetric"])
    assert shape == ("float32", vector_index.DIMENSION, vector_index.DISTANCE) == ("float32", 512, "cosine")
    assert props["EncryptionConfiguration"]["SseType"] in ("AES256", "aws:kms")
    assert bucket["Properties"]["EncryptionConfiguration"]["SseType"] in ("AES256", "aws:kms")
    assert props["MetadataConfiguration"]["NonFilterableMetadataKeys"] == list(vector_index.NON_FILTERABLE)
    assert set(vector_index.NON_FILTERABLE) == {"key", "width", "height"}
    assert props["VectorBucketArn"] == {"Fn::GetAtt": ["VectorBucket", "VectorBucketArn"]}
    env = template["Globals"]["Function"]["Environment"]["Variables"]  # both functions
    assert env["VECTOR_INDEX"] == {"Fn::If": ["HasVectorIndex", props["IndexName"], ""]}
    name = env["VECTOR_BUCKET"]["Fn::If"]
    assert name[0] == "HasVectorIndex" and name[2] == "" and name[1] == bucket["Properties"]["VectorBucketName"]
    for fn in of_type(resources, "AWS::Serverless::Function").values():
        assert not {"VECTOR_BUCKET", "VECTOR_INDEX"} & set(fn["Properties"].get("Environment", {}).get("Variables", {}))
    output = template["Outputs"]["VectorIndexArn"]
    assert output["Condition"] == "HasVectorIndex"
    assert output["Value"] == {"Fn::GetAtt": ["EmbeddingsIndex", "IndexArn"]}


def test_the_vendored_s3vectors_schemas_are_still_needed() -> None:
    """.cfnlintrc registers the S3 Vectors resource schemas for a cfn-lint that predates them; once the
    pinned cfn-lint ships its own, drop infra/ci/cfn-schemas and .cfnlintrc."""
    from cfnlint.schema import ResourceNotFoundError
    from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

    known = []
    for type_name in ("AWS::S3Vectors::VectorBucket", "AWS::S3Vectors::Index"):
        try:
            PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_name)
            known.append(type_name)
        except ResourceNotFoundError:
            pass
    assert known == [], f"cfn-lint now ships {known}: remove the vendored schemas"
    assert "infra/ci/cfn-schemas" in (ROOT / ".cfnlintrc").read_text()


def test_functions_are_traced(resources: dict[str, Any], template: dict[str, Any]) -> None:
    """Tracer subsegments reach X-Ray only with active tracing (a parameter, default Active)."""
    assert template["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    assert template["Parameters"]["Tracing"]["Default"] == "Active"
    # PassThrough also tells Powertools, so that the functions skip the X-Ray SDK at INIT.
    assert template["Conditions"]["TracingActive"] == {"Fn::Equals": [{"Ref": "Tracing"}, "Active"]}
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingActive", "false", "true"]}


def test_log_groups_have_retention(resources: dict[str, Any]) -> None:
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert set(groups) == {"S3FunctionLogGroup", "ApiFunctionLogGroup", "HttpApiAccessLogGroup"}
    for g in groups.values():
        assert g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# --------------------------------------------------------------------------------------------------- events
def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def test_sqs_wrapped_s3_put_event_is_real_shaped() -> None:
    event = SQSEvent(load_event("sqs-s3-put.json"))
    records = list(event.records)
    assert len(records) == 1 and records[0].event_source == "aws:sqs"
    s3 = S3Event(json.loads(records[0].body))
    assert s3.record.event_name == "ObjectCreated:Put"
    assert "+" in s3.record.s3.get_object.key, "keys arrive URL-encoded (space as '+')"
    assert s3.record.s3.get_object.sequencer


def test_direct_s3_put_event_is_real_shaped() -> None:
    event = S3Event(load_event("s3-put.json"))
    assert event.record.event_source == "aws:s3"
    assert event.bucket_name.startswith("clip-")


def test_eventbridge_event_is_real_shaped() -> None:
    event = S3EventBridgeNotificationEvent(load_event("eventbridge-object-created.json"))
    assert event.detail_type == "Object Created"
    assert event.source == "aws.s3"
    assert event.detail.object.key


def test_api_event_carries_a_base64_photo() -> None:
    event = APIGatewayProxyEventV2(load_event("api-embed.json"))
    assert event.request_context.http.method == "POST"
    assert event.raw_path == "/embed"
    assert event.is_base64_encoded
    assert event.request_context.authorizer.iam.user_arn, "IAM-authorized, as the template's default"
    with Image.open(io.BytesIO(base64.b64decode(event.body or ""))) as img:
        assert img.format == "JPEG" and min(img.size) >= 224


@pytest.mark.parametrize("name", ["sqs-s3-put.json", "s3-put.json", "eventbridge-object-created.json"])
def test_s3_events_are_understood_by_the_handler(name: str) -> None:
    from handler import events

    kinds = {"sqs-s3-put.json": "sqs", "s3-put.json": "s3", "eventbridge-object-created.json": "eventbridge"}
    assert events.classify(load_event(name)) == kinds[name]


def test_env_vars_point_every_endpoint_at_loopback() -> None:
    env = load_event("env.json")
    assert set(env) == {"S3Function", "ApiFunction"}
    for values in env.values():
        assert values["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert values["AWS_ENDPOINT_URL_STS"].startswith("http://127.0.0.1:")


def test_visibility_timeout_default_is_six_function_timeouts(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert int(params["QueueVisibilityTimeout"]["Default"]) >= 6 * int(params["S3FunctionTimeout"]["Default"])
    assert int(params["ApiFunctionTimeout"]["Default"]) <= 30, "HTTP API integrations time out at 30 s"


def test_events_folder_is_what_make_events_writes() -> None:
    """events/ is generated (infra/local/make_events.py), like handler/openapi.json: kept current by this test."""
    from infra.local.make_events import event_files

    expected = event_files()
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(expected)
    for name, content in expected.items():
        assert load_event(name) == json.loads(json.dumps(content)), (
            f"regenerate: python infra/local/make_events.py ({name})"
        )


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


BACKFILL_MACHINE = (
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-backfill"
)
BACKFILL_EXECUTIONS = (
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${AWS::StackName}-backfill/*"
)
# The backfill's state machine role, exactly (action, resource node).
BACKFILL_GRANTS = {
    ("lambda:InvokeFunction", json.dumps([{"Fn::GetAtt": ["S3Function", "Arn"]}, _sub("${S3Function.Arn}:*")])),
    ("s3:ListBucket", json.dumps({"Fn::GetAtt": ["ImagesBucket", "Arn"]})),
    ("s3:GetObject", json.dumps(_sub("${BackfillReportsBucket.Arn}/manifests/*"))),
    *{
        (f"s3:{verb}", json.dumps(_sub("${BackfillReportsBucket.Arn}/runs/*")))
        for verb in ("PutObject", "GetObject", "ListMultipartUploadParts", "AbortMultipartUpload")
    },
    ("states:StartExecution", json.dumps(_sub(BACKFILL_MACHINE))),
    ("states:DescribeExecution", json.dumps(_sub(BACKFILL_EXECUTIONS))),
    ("states:StopExecution", json.dumps(_sub(BACKFILL_EXECUTIONS))),
    ("xray:PutTraceSegments", json.dumps("*")),
    ("xray:PutTelemetryRecords", json.dumps("*")),
}


def test_backfill_role_is_least_privilege(resources: dict[str, Any]) -> None:
    role = resources["BackfillRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "states.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    granted = {(a, json.dumps(s["Resource"])) for s in statements(resources, "BackfillRole") for a in actions(s)}
    assert granted == BACKFILL_GRANTS
    machine = resources["BackfillStateMachine"]["Properties"]
    assert machine["Role"] == {"Fn::GetAtt": ["BackfillRole", "Arn"]} and "Policies" not in machine
    assert machine["Name"] == _sub("${AWS::StackName}-backfill")  # the name the role's ARNs use


def test_backfill_is_a_distributed_map_over_the_s3_function(resources: dict[str, Any]) -> None:
    machine = resources["BackfillStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"] == {
        "FunctionArn": {"Fn::GetAtt": ["S3Function", "Arn"]},
        "ImagesBucket": {"Ref": "ImagesBucket"},
        "ReportsBucket": {"Ref": "BackfillReportsBucket"},
    }
    states = machine["Definition"]["States"]
    readers = {name: states[name]["ItemReader"] for name in ("FromListing", "FromCsv", "FromInventory")}
    assert readers["FromListing"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert readers["FromListing"]["Parameters"] == {"Bucket": "${ImagesBucket}", "Prefix.$": "$.prefix"}
    assert readers["FromCsv"]["ReaderConfig"]["InputType"] == "CSV"
    assert readers["FromInventory"]["ReaderConfig"]["InputType"] == "MANIFEST"
    for name in readers:
        m = states[name]
        assert m["Type"] == "Map" and m["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED",
                                                                                "ExecutionType": "EXPRESS"}  # fmt: skip
        assert m["ToleratedFailurePercentage"] == 100
        assert m["ResultWriter"]["Parameters"]["Bucket"] == "${ReportsBucket}"
        assert m["ResultWriter"]["Parameters"]["Prefix.$"].startswith("States.Format('runs/")
        embed = m["ItemProcessor"]["States"]["Embed"]
        assert embed["Parameters"]["FunctionName"] == "${FunctionArn}"
        (retry,) = embed["Retry"]
        assert "TransientError" in retry["ErrorEquals"]
        assert not {"ModelMismatch", "MalformedEvent", "States.ALL"} & set(retry["ErrorEquals"])
    reports = resources["BackfillReportsBucket"]["Properties"]
    assert (
        reports["PublicAccessBlockConfiguration"]
        == resources["ImagesBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    )
    assert reports["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30
