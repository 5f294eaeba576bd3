"""template.yaml and events/: linted by `sam validate --lint` and cfn-lint, and checked for the properties the
issue asks for. No Docker engine needed: these always run."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from PIL import Image
from samcli.yamlhelper import yaml_parse  # parses the short-form intrinsics (!Ref, !Sub, ...)

from infra.local.api_gateway import TEMPLATE_ROUTES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
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


# us-east-1 (cfn-lint's default) and regions where VectorIndex=auto leaves the S3 Vectors resources out. The
# vendored S3 Vectors schemas (.cfnlintrc) are registered for every region, so cfn-lint 1.34 cannot tell where
# the types are missing: test_vector_index_auto_follows_availability pins the conditions themselves.
LINT_REGIONS = ("us-east-1", "il-central-1", "me-central-1", "cn-north-1", "us-gov-west-1")


def test_cfn_lint_clean() -> None:
    proc = run_linter(tool("cfn-lint"), "--regions", *LINT_REGIONS, "--", str(TEMPLATE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


# ----------------------------------------------------------------------------------------------- functions
FUNCTIONS = {  # the three functions of the one image, by the handler each runs
    "S3Function": "handler.s3.lambda_handler",
    "ApiFunction": "handler.api.lambda_handler",
    "ModelCheckFunction": "handler.deploy_check.lambda_handler",
}


def test_all_functions_share_one_image_with_different_commands(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    commands = {name: f["Properties"]["ImageConfig"]["Command"] for name, f in functions.items()}
    assert commands == {name: [handler] for name, handler in FUNCTIONS.items()}
    for handler in FUNCTIONS.values():  # each command names a module and function that exist
        module, _, function = handler.rpartition(".")
        assert f"def {function}(" in (ROOT / (module.replace(".", "/") + ".py")).read_text(), handler
    build = [{k: v for k, v in f["Metadata"].items() if k != "checkov"} for f in functions.values()]
    assert all(b == build[0] for b in build), "one Dockerfile, context and build args for every function"
    metadata = build
    assert metadata[0]["Dockerfile"] == "infra/image/Dockerfile"
    assert (ROOT / metadata[0]["DockerContext"] / metadata[0]["Dockerfile"]).is_file()
    # A deployment builds the trained model's image; random-init only on purpose (with AllowUntrainedModel).
    assert metadata[0]["DockerBuildArgs"]["ALLOW_UNTRAINED_MODEL"] == "false"
    for name, f in functions.items():
        props = f["Properties"]
        assert props["PackageType"] == "Image"
        for key in ("MemorySize", "Timeout"):
            assert key in props, key
        # One call per deployment, from CloudFormation: nothing to reserve for the check.
        assert ("ReservedConcurrentExecutions" in props) is (name != "ModelCheckFunction"), name
        assert "LogGroup" in props["LoggingConfig"]


def test_model_check_function_runs_the_image_once_per_deployment(resources: dict[str, Any]) -> None:
    props = resources["ModelCheckFunction"]["Properties"]
    assert (props["MemorySize"], props["Timeout"]) == (1024, 120)
    assert props["Tracing"] == "PassThrough"  # nothing to trace: its role has no X-Ray grant
    assert props["AutoPublishAlias"] == "live"  # a new version per image, which the custom resource names
    assert props["Role"] == {"Fn::GetAtt": ["ModelCheckRole", "Arn"]}
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "ModelCheckLogGroup"}}
    assert "Events" not in props and "Policies" not in props
    assert "DependsOn" not in resources["ModelCheckFunction"]


def test_model_check_gates_the_functions_that_take_traffic(resources: dict[str, Any]) -> None:
    """A failed check (dimension, self-check, untrained model) fails the deployment before any traffic."""
    check = resources["ModelCheck"]
    assert check["Type"] == "Custom::ModelCheck"
    assert check["Properties"] == {
        "ServiceToken": {"Ref": "ModelCheckFunction.Alias"},  # a stable ARN: CloudFormation refuses a new token
        "EmbeddingDimension": {"Ref": "EmbeddingDimension"},
        "AllowUntrainedModel": {"Ref": "AllowUntrainedModel"},
        "ImageVersion": {"Ref": "ModelCheckFunction.Version"},  # changes with the image: the check reruns
    }
    source = (ROOT / "handler" / "deploy_check.py").read_text()  # the properties the check reads
    for name in ("EmbeddingDimension", "AllowUntrainedModel"):
        assert f'properties.get("{name}"' in source, name
    for name in ("S3Function", "ApiFunction"):
        depends = resources[name]["DependsOn"]
        assert "ModelCheck" in ([depends] if isinstance(depends, str) else depends), name


def sam_transform(monkeypatch: pytest.MonkeyPatch, image_uri: str) -> dict[str, Any]:
    """The template as SAM's transform makes it (locally: samtranslator, as `sam deploy` does server-side)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # the template attaches none (its roles are written out)
        def load(self) -> dict[str, str]:
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(TEMPLATE.read_text())
    for name in FUNCTIONS:
        template["Resources"][name]["Properties"]["ImageUri"] = image_uri
    resources: dict[str, Any] = transform(template, {}, NoManagedPolicies())["Resources"]
    return resources


def test_model_check_reruns_for_every_new_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """AutoPublishAlias publishes a version per image; the custom resource's ImageVersion is that version, so a
    new image is an Update of ModelCheck (the check runs again), through the same alias (its ServiceToken)."""
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/clip-lambda@sha256:"
    versions = []
    for digest in ("a" * 64, "b" * 64):
        resources = sam_transform(monkeypatch, repo + digest)
        props = resources["ModelCheck"]["Properties"]
        assert props["ServiceToken"] == {"Ref": "ModelCheckFunctionAliaslive"}
        alias = resources["ModelCheckFunctionAliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        version = props["ImageVersion"]["Ref"]
        assert resources[version]["Type"] == "AWS::Lambda::Version"
        assert resources[version]["Properties"]["FunctionName"] == {"Ref": "ModelCheckFunction"}
        assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}
        assert resources["ModelCheckFunction"]["Properties"]["TracingConfig"] == {"Mode": "PassThrough"}
        for name in ("S3Function", "ApiFunction"):
            assert resources[name]["DependsOn"] in ("ModelCheck", ["ModelCheck"])
        versions.append(version)
    assert versions[0] != versions[1], "the same version for another image: the check would not rerun"


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
        "QueueVisibilityTimeout",
        "AlarmTopicArn",
        "AlarmEmail",
        "AllowUntrainedModel",
        "ImagesInventory",
        "EmbeddingDimension",
        "VectorIndex",
    ):
        assert "Default" in params[name], name
        assert len(params[name].get("Description", "")) > 20, f"{name}: say why"
    assert params["ApiAuth"]["Default"] == "AWS_IAM"
    assert 1024 <= int(params["S3FunctionMemorySize"]["Default"]) <= 10240
    for param in params.values():  # a default the stack itself would refuse
        if "AllowedValues" in param:
            assert param["Default"] in param["AllowedValues"], param
        if "MinValue" in param:
            assert param["MinValue"] <= int(param["Default"]) <= param.get("MaxValue", float("inf")), param


def test_embedding_dimension_and_untrained_flag_reach_every_function(template: dict[str, Any]) -> None:
    """EmbeddingDimension sizes the index and each function's INIT check; AllowUntrainedModel tells INIT (and
    the deploy check) that random weights are on purpose. Both through Globals, for all three functions."""
    from handler import settings

    params = template["Parameters"]
    dim = params["EmbeddingDimension"]
    assert (dim["Type"], dim["Default"], dim["MinValue"], dim["MaxValue"]) == ("Number", 512, 1, 4096)
    untrained = params["AllowUntrainedModel"]
    assert (untrained["Default"], untrained["AllowedValues"]) == ("false", ["false", "true"])
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env[settings.EMBEDDING_DIM] == {"Ref": "EmbeddingDimension"}
    assert env[settings.ALLOW_UNTRAINED_MODEL] == {"Ref": "AllowUntrainedModel"}
    assert template["Resources"]["EmbeddingsIndex"]["Properties"]["Dimension"] == {"Ref": "EmbeddingDimension"}
    for name, fn in of_type(template["Resources"], "AWS::Serverless::Function").items():
        own = fn["Properties"].get("Environment", {}).get("Variables", {})
        assert not {settings.EMBEDDING_DIM, settings.ALLOW_UNTRAINED_MODEL} & set(own), f"{name} overrides Globals"


def test_architecture_is_a_parameter_of_every_function(template: dict[str, Any]) -> None:
    param = template["Parameters"]["Architecture"]
    assert (param["Default"], param["AllowedValues"]) == ("x86_64", ["x86_64", "arm64"])
    assert "estimated" in param["Description"] and "measured" in param["Description"]
    assert template["Globals"]["Function"]["Architectures"] == [{"Ref": "Architecture"}]
    for fn in of_type(template["Resources"], "AWS::Serverless::Function").values():
        assert "Architectures" not in fn["Properties"], "the global decides for all: they run one image"


# ---------------------------------------------------------------------------------- Rules and Conditions
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}


def parameter_values(template: dict[str, Any], **values: str) -> dict[str, str]:
    """What CloudFormation would hand the template: the defaults, these values, the pseudo parameters (all
    strings, as Rules and Conditions see them)."""
    unknown = set(values) - set(template["Parameters"]) - set(PSEUDO)
    assert not unknown, f"no such parameters: {unknown}"
    defaults = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    return {**PSEUDO, **defaults, **values}


def evaluate(node: Any, values: dict[str, str], conditions: dict[str, Any] | None = None) -> Any:
    """A tiny evaluator of the intrinsics Rules and Conditions use: Fn::Equals, Fn::Contains, Fn::And, Fn::Or,
    Fn::Not, Condition and Ref (a parameter or pseudo parameter). Anything else fails the test: extend this
    on purpose rather than let an intrinsic go unevaluated."""
    if isinstance(node, dict):
        ((key, arg),) = node.items()
        if key == "Ref":
            return values[arg]
        if key == "Condition":
            assert conditions is not None, "Condition outside the Conditions section"
            return evaluate(conditions[arg], values, conditions)
        args = [evaluate(a, values, conditions) for a in arg] if isinstance(arg, list) else arg
        if key == "Fn::Equals":
            left, right = args
            return str(left) == str(right)
        if key == "Fn::Contains":
            options, value = args
            return str(value) in [str(o) for o in options]
        if key == "Fn::And":
            return all(args)
        if key == "Fn::Or":
            return any(args)
        if key == "Fn::Not":
            (inner,) = args
            return not inner
        pytest.fail(f"the evaluator does not know {key}")
    if isinstance(node, list):
        return [evaluate(item, values, conditions) for item in node]
    return node


def decide(template: dict[str, Any], **values: str) -> dict[str, bool]:
    """Every condition of the template, decided for these parameter (and pseudo parameter) values."""
    vals = parameter_values(template, **values)
    conditions = template["Conditions"]
    return {name: bool(evaluate(node, vals, conditions)) for name, node in conditions.items()}


def rules_accept(template: dict[str, Any], **values: str) -> bool:
    """Whether the template's Rules let a stack be created or updated with these parameter values."""
    vals = parameter_values(template, **values)
    for rule in template["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], vals):
            continue
        if not all(evaluate(assertion["Assert"], vals) for assertion in rule["Assertions"]):
            return False
    return True


def test_rules_refuse_a_visibility_under_six_function_timeouts(template: dict[str, Any]) -> None:
    """Every pair of allowed values: accepted exactly when the visibility is at least 6x the timeout (AWS's
    guidance for SQS event sources; below the timeout the event source mapping could not even be created)."""
    params = template["Parameters"]
    timeouts = [int(t) for t in params["S3FunctionTimeout"]["AllowedValues"]]
    visibilities = [int(v) for v in params["QueueVisibilityTimeout"]["AllowedValues"]]
    assert max(timeouts) <= 900 and max(visibilities) <= 43200  # Lambda's and SQS's maxima
    verdicts = {
        (t, v): rules_accept(template, S3FunctionTimeout=str(t), QueueVisibilityTimeout=str(v))
        for t, v in itertools.product(timeouts, visibilities)
    }
    wrong = {pair: accepted for pair, accepted in verdicts.items() if accepted != (pair[1] >= 6 * pair[0])}
    assert not wrong, f"(timeout, visibility): accepted? {wrong}"
    assert rules_accept(template)  # the defaults
    # One rule per allowed timeout (CloudFormation has no arithmetic): a new timeout without its rule would
    # be accepted with any visibility.
    for t in timeouts:
        vals = parameter_values(template, S3FunctionTimeout=str(t))
        applying = [r for r in template["Rules"].values() if evaluate(r["RuleCondition"], vals)]
        assert len(applying) == 1, f"{t} s: {len(applying)} rules"
        (assertion,) = applying[0]["Assertions"]
        assert f"({6 * t} s for {t} s)" in assertion["AssertDescription"]


@pytest.mark.parametrize(
    ("partition", "region", "choice", "expected"),
    [
        ("aws", "us-east-1", "auto", True),
        ("aws", "eu-west-1", "auto", True),
        ("aws", "il-central-1", "auto", False),
        ("aws", "me-south-1", "auto", False),
        ("aws", "me-central-1", "auto", False),
        ("aws-cn", "cn-north-1", "auto", False),
        ("aws-us-gov", "us-gov-west-1", "auto", False),
        ("aws", "il-central-1", "s3vectors", True),  # asked for explicitly: the stack fails there, visibly
        ("aws", "us-east-1", "none", False),
        ("aws-cn", "cn-northwest-1", "none", False),
    ],
)
def test_vector_index_auto_follows_availability(
    template: dict[str, Any], partition: str, region: str, choice: str, expected: bool
) -> None:
    decided = decide(template, **{"AWS::Partition": partition, "AWS::Region": region, "VectorIndex": choice})
    assert decided["HasVectorIndex"] is expected
    unavailable = partition != "aws" or region in {"il-central-1", "me-south-1", "me-central-1"}
    assert decided["S3VectorsUnavailable"] is unavailable


def test_default_conditions(template: dict[str, Any]) -> None:
    """The defaults: an index (us-east-1), IAM auth with store, the stack's own alarm topic, no inventory."""
    decided = decide(template)
    assert {name: decided[name] for name in DEFAULTS} == DEFAULTS
    expected = {
        "HasInventory": False,
        "CreateAlarmTopic": True,
        "HasAlarmTopic": False,
        "SubscribeAlarmEmail": False,
        "TracingActive": True,
        "IsPublicApi": False,
        "HasS3Reserved": False,
        "HasApiReserved": False,
    }
    assert {name: decided[name] for name in expected} == expected
    assert set(decided) == set(expected) | set(DEFAULTS) | {"S3VectorsUnavailable"}, "a new condition: test it"


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
    assert set(of_type(resources, "AWS::CloudWatch::Alarm")) == {"DeadLetterAlarm", "SelfCheckAlarm"}
    props = resources["DeadLetterAlarm"]["Properties"]
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


ALARM_TARGET = {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}


def test_self_check_alarm_watches_the_metric_the_code_emits(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """ModelSelfCheckFailed, emitted at INIT by handler.observability in the Powertools namespace and service
    the functions are given (an alarm on another name or dimension would never fire)."""
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    props = resources["SelfCheckAlarm"]["Properties"]
    assert props["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"] == "ClipLambda"
    assert props["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert props["MetricName"] == "ModelSelfCheckFailed"
    assert 'name="ModelSelfCheckFailed"' in (ROOT / "handler" / "observability.py").read_text()
    assert (props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == ("Sum", "GreaterThanThreshold", 0)
    assert props["TreatMissingData"] == "notBreaching"  # emitted only when a check fails


@pytest.mark.parametrize(
    ("topic", "email", "created", "subscribed"),
    [
        ("", "", True, False),
        ("", "ops@example.com", True, True),
        ("arn:aws:sns:us-east-1:123456789012:mine", "ops@example.com", False, False),  # AlarmEmail ignored
        ("arn:aws:sns:us-east-1:123456789012:mine", "", False, False),
    ],
)
def test_alarms_notify_a_topic_by_default(
    template: dict[str, Any], resources: dict[str, Any], topic: str, email: str, created: bool, subscribed: bool
) -> None:
    """AlarmTopicArn empty (default): the stack's own topic (AlarmEmail subscribed to it); else the given one.
    Either way both alarms notify, and the AlarmTopicArn output names the topic."""
    params = template["Parameters"]
    assert params["AlarmTopicArn"]["Default"] == params["AlarmEmail"]["Default"] == ""
    decided = decide(template, AlarmTopicArn=topic, AlarmEmail=email)
    assert decided["CreateAlarmTopic"] is created and decided["SubscribeAlarmEmail"] is subscribed
    topic_resource, subscription = resources["AlarmTopic"], resources["AlarmEmailSubscription"]
    assert (topic_resource["Type"], topic_resource["Condition"]) == ("AWS::SNS::Topic", "CreateAlarmTopic")
    assert subscription["Condition"] == "SubscribeAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}  # fmt: skip
    target = {"Ref": "AlarmTopic"} if created else {"Ref": "AlarmTopicArn"}
    for name in ("DeadLetterAlarm", "SelfCheckAlarm"):
        props = resources[name]["Properties"]
        assert props["AlarmActions"] == [ALARM_TARGET], name
        assert resolve(props["AlarmActions"], decided) == [target], name
    assert resources["DeadLetterAlarm"]["Properties"]["OKActions"] == [ALARM_TARGET]  # and when it is drained
    output = template["Outputs"]["AlarmTopicArn"]
    assert "Condition" not in output and resolve(output["Value"], decided) == target


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


# The conditions of the roles' grants, as the default parameters set them (test_default_conditions checks).
DEFAULTS = {"HasVectorIndex": True, "ApiStoreOff": False}


def statements(resources: dict[str, Any], role: str, conditions: dict[str, bool] = DEFAULTS) -> list[dict[str, Any]]:
    policies = resolve(resources[role]["Properties"]["Policies"], conditions)
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    act = statement["Action"]
    return [act] if isinstance(act, str) else act


def if_conditions(node: Any) -> set[str]:
    """The conditions of every Fn::If in a template node."""
    if isinstance(node, dict):
        found = {node["Fn::If"][0]} if "Fn::If" in node else set()
        return found.union(*(if_conditions(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(if_conditions(v) for v in node))
    return set()


def granted(resources: dict[str, Any], role: str, conditions: dict[str, bool]) -> set[Any]:
    return {(a, frozenset(refs(s["Resource"])) if s["Resource"] != "*" else "*")
            for s in statements(resources, role, conditions) for a in actions(s)}  # fmt: skip


_XRAY = {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
_BUCKET, _TABLE = frozenset({"ImagesBucket"}), frozenset({"EmbeddingsTable"})
_INDEX = frozenset({"EmbeddingsIndex"})
# The vector index's grants (VectorIndex=s3vectors): the S3 function follows the table into the index (and
# reads it to repair a duplicate); the API searches it (a filtered query returning metadata needs GetVectors).
INDEX_GRANTS: dict[str, set[Any]] = {
    "S3FunctionRole": {(f"s3vectors:{verb}", _INDEX) for verb in ("PutVectors", "DeleteVectors", "GetVectors")},
    "ApiFunctionRole": {(f"s3vectors:{verb}", _INDEX) for verb in ("QueryVectors", "GetVectors")},
}
# {"store": true} on POST /embed: a conditional put, and GetItem to tell a duplicate from a stale write.
STORE_GRANTS = {("dynamodb:PutItem", _TABLE), ("dynamodb:GetItem", _TABLE)}
# Each role's unconditional grants, exactly (action, resources): a new action or a widened resource fails.
BASE_GRANTS: dict[str, set[Any]] = {
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
    },
    # The deploy check reads only its image's model and answers CloudFormation's pre-signed URL: its own logs.
    "ModelCheckRole": {
        ("logs:CreateLogStream", frozenset({"ModelCheckLogGroup"})),
        ("logs:PutLogEvents", frozenset({"ModelCheckLogGroup"})),
    },
}
# The conditional statements of each role: (condition, the value that grants, the grants).
CONDITIONAL_GRANTS: dict[str, list[tuple[str, bool, set[Any]]]] = {
    "S3FunctionRole": [("HasVectorIndex", True, INDEX_GRANTS["S3FunctionRole"])],
    "ApiFunctionRole": [
        ("HasVectorIndex", True, INDEX_GRANTS["ApiFunctionRole"]),
        ("ApiStoreOff", False, STORE_GRANTS),  # no table write where store is off (public API by default)
    ],
    "ModelCheckRole": [],
}
ROLE_OF = {"S3Function": "S3FunctionRole", "ApiFunction": "ApiFunctionRole", "ModelCheckFunction": "ModelCheckRole"}


def expected_grants(role: str, conditions: dict[str, bool]) -> set[Any]:
    grants = set(BASE_GRANTS[role])
    for condition, grants_when, extra in CONDITIONAL_GRANTS[role]:
        if conditions[condition] is grants_when:
            grants |= extra
    return grants


def condition_cases(role: str) -> list[dict[str, bool]]:
    """Both branches of every condition a role's statements depend on, in every combination."""
    names = sorted({c for c, _, _ in CONDITIONAL_GRANTS[role]})
    return [dict(zip(names, values, strict=True)) for values in itertools.product([True, False], repeat=len(names))]


def test_every_role_is_tested(resources: dict[str, Any]) -> None:
    roles = of_type(resources, "AWS::IAM::Role")
    assert set(roles) == {*ROLE_OF.values(), "BackfillRole"}
    for fn, role in ROLE_OF.items():
        trust = roles[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                          "Action": "sts:AssumeRole"}], role  # fmt: skip
        assert resources[fn]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        # Every conditional statement is listed here (resolve() would fail on a condition left out).
        assert if_conditions(roles[role]["Properties"]["Policies"]) == {c for c, _, _ in CONDITIONAL_GRANTS[role]}


@pytest.mark.parametrize("role", list(BASE_GRANTS))
def test_roles_are_least_privilege(resources: dict[str, Any], role: str) -> None:
    assert "ManagedPolicyArns" not in resources[role]["Properties"], "managed policies grant Resource: *"
    for conditions in condition_cases(role):  # both branches of every !If
        for statement in statements(resources, role, conditions):
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
                    assert statement["Resource"] == {"Fn::GetAtt": ["EmbeddingsIndex", "IndexArn"]}  # that index
                else:
                    pytest.fail(f"unexpected action {action}")
        assert granted(resources, role, conditions) == expected_grants(role, conditions), conditions
    fn = next(fn for fn, r in ROLE_OF.items() if r == role)
    assert resources[fn]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    assert "Policies" not in resources[fn]["Properties"], "SAM Policies would add managed policies"
    # Each function logs to its own group, and its role may write there only.
    own_group = resources[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert {r for a, r in granted(resources, role, DEFAULTS) if a.startswith("logs:")} == {frozenset({own_group})}


def test_model_check_role_has_no_tracing_grant(resources: dict[str, Any]) -> None:
    """PassThrough tracing: X-Ray's write actions would be the only Resource: * grant, for nothing."""
    assert resources["ModelCheckFunction"]["Properties"]["Tracing"] == "PassThrough"
    assert not {a for a, _ in granted(resources, "ModelCheckRole", {})} & {a for a, _ in _XRAY}


@pytest.mark.parametrize("role", ["S3FunctionRole", "ApiFunctionRole"])
def test_without_a_vector_index_no_role_touches_s3vectors(resources: dict[str, Any], role: str) -> None:
    """VectorIndex=none: the same grants less the index's."""
    conditions = DEFAULTS | {"HasVectorIndex": False}
    assert granted(resources, role, conditions) == expected_grants(role, DEFAULTS) - INDEX_GRANTS[role]
    assert not any(a.startswith("s3vectors:") for a, _ in granted(resources, role, conditions))


@pytest.mark.parametrize(
    ("auth", "allow_store", "store"),
    [("AWS_IAM", "auto", True), ("NONE", "auto", False), ("NONE", "true", True), ("AWS_IAM", "false", False)],
)
def test_api_role_writes_the_table_only_where_store_is_on(
    template: dict[str, Any], resources: dict[str, Any], auth: str, allow_store: str, store: bool
) -> None:
    """ApiAllowStore (auto: on with IAM auth, off for a public API): the function is told, and where store is
    off its role cannot write (or read) the table at all, whatever the code does."""
    decided = decide(template, ApiAuth=auth, ApiAllowStore=allow_store)
    assert decided["ApiStoreOff"] is not store
    env = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert resolve(env["API_ALLOW_STORE"], decided) == ("true" if store else "false")
    dynamodb = {a for a, _ in granted(resources, "ApiFunctionRole", decided) if a.startswith("dynamodb:")}
    assert dynamodb == ({"dynamodb:PutItem", "dynamodb:GetItem"} if store else set())


def test_the_vector_index_is_the_one_the_code_writes(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """EmbeddingDimension-d (512 by default) float32 cosine, encrypted, the non-filterable keys of
    handler.vector_index; only where HasVectorIndex, and all functions are told its names."""
    from handler import vector_index

    param = template["Parameters"]["VectorIndex"]
    assert (param["Default"], param["AllowedValues"]) == ("auto", ["auto", "s3vectors", "none"])
    bucket, index = resources["VectorBucket"], resources["EmbeddingsIndex"]
    assert bucket["Type"] == "AWS::S3Vectors::VectorBucket" and index["Type"] == "AWS::S3Vectors::Index"
    assert bucket["Condition"] == index["Condition"] == "HasVectorIndex"
    assert {name for name, r in resources.items() if r.get("Condition") == "HasVectorIndex"} == {
        "VectorBucket",
        "EmbeddingsIndex",
    }
    props = index["Properties"]
    shape = (props["DataType"], props["Dimension"], props["DistanceMetric"])
    assert shape == ("float32", {"Ref": "EmbeddingDimension"}, "cosine")
    assert props["DistanceMetric"] == vector_index.DISTANCE  # the code turns the distance into a score
    assert template["Parameters"]["EmbeddingDimension"]["Default"] == 512  # ViT-B/32's
    assert props["EncryptionConfiguration"]["SseType"] in ("AES256", "aws:kms")
    assert bucket["Properties"]["EncryptionConfiguration"]["SseType"] in ("AES256", "aws:kms")
    assert props["MetadataConfiguration"]["NonFilterableMetadataKeys"] == list(vector_index.NON_FILTERABLE)
    assert set(vector_index.NON_FILTERABLE) == {"key", "width", "height"}
    assert props["VectorBucketArn"] == {"Fn::GetAtt": ["VectorBucket", "VectorBucketArn"]}
    env = template["Globals"]["Function"]["Environment"]["Variables"]  # every function
    assert env["VECTOR_INDEX"] == {"Fn::If": ["HasVectorIndex", props["IndexName"], ""]}
    name = env["VECTOR_BUCKET"]["Fn::If"]
    assert name[0] == "HasVectorIndex" and name[2] == "" and name[1] == bucket["Properties"]["VectorBucketName"]
    for fn in of_type(resources, "AWS::Serverless::Function").values():
        assert not {"VECTOR_BUCKET", "VECTOR_INDEX"} & set(fn["Properties"].get("Environment", {}).get("Variables", {}))
    output = template["Outputs"]["VectorIndexArn"]
    assert output["Condition"] == "HasVectorIndex"
    assert output["Value"] == {"Fn::GetAtt": ["EmbeddingsIndex", "IndexArn"]}
    assert "512" not in output["Description"] and "EmbeddingDimension" in output["Description"]


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
    assert set(groups) == {"S3FunctionLogGroup", "ApiFunctionLogGroup", "ModelCheckLogGroup", "HttpApiAccessLogGroup"}
    for g in groups.values():
        assert g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    names = [json.dumps(g["Properties"]["LogGroupName"]) for g in groups.values()]
    assert len(set(names)) == len(names), names
    for fn in ROLE_OF:  # each function logs to a group of its own
        assert resources[fn]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] in groups
    assert len({json.dumps(resources[fn]["Properties"]["LoggingConfig"]) for fn in ROLE_OF}) == len(ROLE_OF)


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


def test_env_vars_let_sam_local_run_the_tests_random_init_model(template: dict[str, Any]) -> None:
    """`sam local invoke` runs the image of the tests' random-init model: INIT refuses it unless told (the
    variable the template sets from AllowUntrainedModel, "false" in a deployment)."""
    from handler import settings

    assert template["Globals"]["Function"]["Environment"]["Variables"][settings.ALLOW_UNTRAINED_MODEL] == {
        "Ref": "AllowUntrainedModel"
    }
    for function, values in load_event("env.json").items():
        assert function in template["Resources"], function
        assert values[settings.ALLOW_UNTRAINED_MODEL] == "true", function


def test_visibility_timeout_default_is_six_function_timeouts(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert int(params["QueueVisibilityTimeout"]["Default"]) >= 6 * int(params["S3FunctionTimeout"]["Default"])
    assert int(params["ApiFunctionTimeout"]["Default"]) <= 30, "HTTP API integrations time out at 30 s"


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
    # CSV manifests the user uploads, and the S3 Inventory reports (manifest.json and its data files).
    (
        "s3:GetObject",
        json.dumps(
            [_sub("${BackfillReportsBucket.Arn}/manifests/*"), _sub("${BackfillReportsBucket.Arn}/inventory/*")]
        ),
    ),
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


MAP_STATES = ("FromListing", "FromCsv", "FromInventory")


def test_backfill_is_a_distributed_map_over_the_s3_function(resources: dict[str, Any]) -> None:
    machine = resources["BackfillStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"] == {
        "FunctionArn": {"Fn::GetAtt": ["S3Function", "Arn"]},
        "ImagesBucket": {"Ref": "ImagesBucket"},
        "ReportsBucket": {"Ref": "BackfillReportsBucket"},
        "Partition": {"Ref": "AWS::Partition"},  # aws, aws-cn, aws-us-gov: the service integrations' ARNs
    }
    states = machine["Definition"]["States"]
    readers = {name: states[name]["ItemReader"] for name in MAP_STATES}
    assert readers["FromListing"]["Resource"] == "arn:${Partition}:states:::s3:listObjectsV2"
    assert readers["FromListing"]["Parameters"] == {"Bucket": "${ImagesBucket}", "Prefix.$": "$.prefix"}
    assert readers["FromCsv"]["ReaderConfig"]["InputType"] == "CSV"
    assert readers["FromInventory"]["ReaderConfig"]["InputType"] == "MANIFEST"
    for name in ("FromCsv", "FromInventory"):  # a manifest the caller names, in the reports bucket
        assert readers[name]["Resource"] == "arn:${Partition}:states:::s3:getObject"
        assert readers[name]["Parameters"] == {"Bucket": "${ReportsBucket}", "Key.$": "$.manifest.key"}
    choices = states["Source"]
    assert {c["Next"] for c in choices["Choices"]} | {choices["Default"]} == set(MAP_STATES)
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
    expiry = {r["Id"]: (r["Prefix"], r["ExpirationInDays"]) for r in reports["LifecycleConfiguration"]["Rules"]}
    assert expiry == {"ExpireRunReports": ("runs/", 30), "ExpireInventories": ("inventory/", 14)}


def test_the_three_map_states_share_one_body(template: dict[str, Any]) -> None:
    """Written once (YAML anchor and merge key), identical after parsing: they differ only in ItemReader."""
    raw = TEMPLATE.read_text()
    assert len(re.findall(r"^\s*<<: &batches\s*$", raw, re.M)) == 1
    assert len(re.findall(r"^\s*<<: \*batches\s*$", raw, re.M)) == 2
    states = template["Resources"]["BackfillStateMachine"]["Properties"]["Definition"]["States"]
    bodies = [{k: v for k, v in states[name].items() if k != "ItemReader"} for name in MAP_STATES]
    assert set(bodies[0]) == {"Type", "ItemBatcher", "MaxConcurrencyPath", "ToleratedFailurePercentage",
                              "ResultWriter", "ItemProcessor", "End"}  # fmt: skip
    assert bodies[1] == bodies[0] and bodies[2] == bodies[0]
    readers = [json.dumps(states[name]["ItemReader"], sort_keys=True) for name in MAP_STATES]
    assert len(set(readers)) == len(readers)
    assert "<<" not in json.dumps(states), "a merge key left unexpanded"
    assert bodies[0]["ItemBatcher"]["BatchInput"]["bucket"] == "${ImagesBucket}"
    assert bodies[0]["MaxConcurrencyPath"] == "$.concurrency"


def definition_resources(node: Any) -> list[str]:
    """Every Resource (a Task's, an ItemReader's, a ResultWriter's) in a state machine definition."""
    if isinstance(node, dict):
        own = [node["Resource"]] if isinstance(node.get("Resource"), str) else []
        return own + [r for v in node.values() for r in definition_resources(v)]
    if isinstance(node, list):
        return [r for v in node for r in definition_resources(v)]
    return []


def test_service_integrations_follow_the_partition(resources: dict[str, Any]) -> None:
    definition = resources["BackfillStateMachine"]["Properties"]["Definition"]
    found = definition_resources(definition)
    assert len(found) == 9  # per Map state: its reader, its writer, its Embed task
    assert set(found) == {
        f"arn:${{Partition}}:states:::{api}" for api in ("s3:listObjectsV2", "s3:getObject", "s3:putObject",
                                                          "lambda:invoke")
    }  # fmt: skip


def test_no_arn_names_the_aws_partition(template: dict[str, Any]) -> None:
    """China and GovCloud have their own partitions: every ARN takes ${AWS::Partition} (or ${Partition} in the
    state machine). Checked over every scalar of the raw text (keys, values, descriptions; not comments)."""
    scalars = [t.value for t in yaml.scan(TEMPLATE.read_text()) if isinstance(t, yaml.ScalarToken)]
    assert any(v.startswith("arn:${AWS::Partition}:") for v in scalars)  # the scan sees the ARNs
    assert any(v.startswith("arn:${Partition}:states:::") for v in scalars)
    hard_coded = [v for v in scalars if re.search(r"arn:aws(-[a-z-]+)?:", v)]
    assert not hard_coded, hard_coded


def test_images_inventory_is_delivered_to_the_reports_bucket(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """ImagesInventory=Daily/Weekly: S3 Inventory of the images bucket, CSV, into inventory/ of the reports
    bucket, where the backfill role reads it and a lifecycle rule expires it; none (default): no inventory."""
    param = template["Parameters"]["ImagesInventory"]
    assert (param["Default"], param["AllowedValues"]) == ("none", ["none", "Daily", "Weekly"])
    for frequency, expected in (("none", False), ("Daily", True), ("Weekly", True)):
        assert decide(template, ImagesInventory=frequency)["HasInventory"] is expected
    bucket = resources["ImagesBucket"]["Properties"]
    assert "InventoryConfigurations" not in resolve(bucket, {"HasInventory": False})
    (config,) = resolve(bucket, {"HasInventory": True})["InventoryConfigurations"]
    assert config["Enabled"] is True and config["IncludedObjectVersions"] == "Current"
    assert config["ScheduleFrequency"] == {"Ref": "ImagesInventory"}
    assert {"Size", "LastModifiedDate", "ETag"} <= set(config["OptionalFields"])
    destination = config["Destination"]
    assert destination == {
        "BucketArn": {"Fn::GetAtt": ["BackfillReportsBucket", "Arn"]},
        "Format": "CSV",
        "Prefix": "inventory",
    }
    # The same prefix everywhere: delivery (the bucket policy), reading (the role), expiry (the lifecycle).
    delivered = _sub("${BackfillReportsBucket.Arn}/" + destination["Prefix"] + "/*")
    policy = resources["BackfillReportsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Resource"] == delivered
    (read,) = [s for s in statements(resources, "BackfillRole") if s.get("Sid") == "ReadManifestsAndInventories"]
    assert actions(read) == ["s3:GetObject"] and delivered in read["Resource"]
    rules = resources["BackfillReportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert destination["Prefix"] + "/" in {r["Prefix"] for r in rules}


def test_reports_bucket_admits_only_s3_inventory_delivery(resources: dict[str, Any]) -> None:
    """S3 (the service) may put inventory/ objects, for this account's images bucket only; nothing over plain
    HTTP. No other principal is granted anything by the policy."""
    policy = resources["BackfillReportsBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "BackfillReportsBucket"}
    delivery, tls = policy["PolicyDocument"]["Statement"]
    assert delivery == {
        "Sid": "InventoryDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": _sub("${BackfillReportsBucket.Arn}/inventory/*"),
        "Condition": {
            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            "ArnLike": {"aws:SourceArn": delivery["Condition"]["ArnLike"]["aws:SourceArn"]},
        },
    }
    # The images bucket, by the deterministic name it is created with (no Ref: no dependency on it).
    source_arn = delivery["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    bucket_name = resources["ImagesBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    assert source_arn[0] == "arn:${AWS::Partition}:s3:::" + bucket_name[0] and source_arn[1] == bucket_name[1]
    assert "*" not in source_arn[0]
    assert tls == {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [{"Fn::GetAtt": ["BackfillReportsBucket", "Arn"]}, _sub("${BackfillReportsBucket.Arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    # The API's base URL: clients append the route (/embed, /embed/text, /search, /model, /health).
    assert outputs["ApiUrl"]["Value"] == _sub("https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}")
    for route in TEMPLATE_ROUTES:
        assert route.split(" ")[1] in outputs["ApiUrl"]["Description"], route
    assert outputs["AlarmTopicArn"]["Value"] == ALARM_TARGET
    for name, output in outputs.items():  # every output names something the stack has
        known = set(template["Resources"]) | set(template["Parameters"]) | {"AWS::Region", "AWS::URLSuffix"}
        assert refs(output["Value"]) <= known, name


# ---------------------------------------------------------------------------------------------- samconfig
def overrides(text: str) -> dict[str, str]:
    """sam's parameter_overrides string: Key="value" pairs, shell-quoted."""
    return dict(item.split("=", 1) for item in shlex.split(text))


def test_samconfig_gives_build_and_deploy_the_same_parameters(template: dict[str, Any]) -> None:
    """Architecture in [default.global.parameters]: `sam build` builds the image for it and `sam deploy`
    creates the functions with it (the old bug: only deploy's section named it, and x86_64 functions ran an
    arm64 image). A command's own parameter_overrides would replace the global list, Architecture and all."""
    config = tomllib.loads(SAMCONFIG.read_text())
    default = config["default"]
    global_overrides = overrides(default["global"]["parameters"]["parameter_overrides"])
    assert {"Architecture", "EmbeddingDimension"} <= set(global_overrides)
    for command, sections in default.items():
        if command == "global":
            continue
        params = sections.get("parameters", {})
        assert "parameter_overrides" not in params, f"[default.{command}.parameters] replaces the global list"
        assert "Architecture" not in json.dumps(params), command
    parameters = template["Parameters"]
    for name, value in global_overrides.items():
        assert name in parameters, f"samconfig names {name}, which the template does not have"
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        if spec["Type"] == "Number":
            assert spec.get("MinValue", -(2**31)) <= int(value) <= spec.get("MaxValue", 2**31), (name, value)
    assert rules_accept(template, **global_overrides)
