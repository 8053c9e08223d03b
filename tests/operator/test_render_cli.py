"""`miroir-operator render` and `crd`, through the installed console script: offline, and
every object it prints is valid Kubernetes 1.30."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from miroir_operator import crd

from .kubevalidate import validate_all
from .opkit import CHART, EXAMPLES, example_cluster

BIN = Path(sys.executable).parent / "miroir-operator"


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def _render(*args: str, stdin: str | None = None) -> list[dict[str, Any]]:
    done = _run("render", *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("example", ["small", "production"])
def test_render_prints_valid_kubernetes_objects(example: str) -> None:
    objects = _render(str(EXAMPLES / f"{example}.yaml"))
    assert validate_all(objects) == []
    kinds = {o["kind"] for o in objects}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds


def test_render_with_keda_gives_one_scaled_object_and_valid_core_objects() -> None:
    document = example_cluster("production")
    document["spec"]["autoscaling"]["provider"] = "keda"
    objects = _render("-", stdin=yaml.safe_dump(document))
    (scaled,) = validate_all(objects)
    assert scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "search-proxy"
    assert [t["metricType"] for t in scaled["spec"]["triggers"]] == ["Value", "AverageValue"]
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]


def test_render_uses_the_image_it_is_given() -> None:
    objects = _render(str(EXAMPLES / "small.yaml"), "--proxy-image", "registry.local/m:7")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/m:7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: miroir.io/v1alpha1\nkind: MiroirCluster\nmetadata: {name: x}\n"
            "spec: {proxy: {replicas: 2}}\n",
            "more than one proxy needs store.type redis",
        ),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", "no miroir.io/v1alpha1"),
        ("apiVersion: [unclosed\n", "miroir-operator render:"),
        ("- just\n- a list\n", "every YAML document must be a mapping"),
    ],
)
def test_render_refuses_bad_input_with_a_message_not_a_traceback(text: str, message: str) -> None:
    done = _run("render", "-", stdin=text)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_crd_command_prints_the_crd_the_chart_installs() -> None:
    done = _run("crd")
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)
    assert printed == crd.manifest()
    assert printed == yaml.safe_load((CHART / "crds" / "miroirclusters.yaml").read_text())
