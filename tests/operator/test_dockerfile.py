"""No Docker engine runs here, so the Dockerfile is checked as text against pyproject.toml:
the entry points it verifies at build time are exactly the product's console scripts, and
every command the chart and the builders run is one of them."""

from __future__ import annotations

import re
import tomllib

import yaml

from miroir_operator import builders
from miroir_operator.spec import parse_cluster

from .opkit import CHART, REPO, example_cluster

DOCKERFILE = (REPO / "Dockerfile").read_text()
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# Test infrastructure that ships in the same distribution but is no product entry point.
NOT_PRODUCT = {"miroir-devnode"}


def _verified_entry_points() -> set[str]:
    match = re.search(r"for command in ([\w\- ]+); do", DOCKERFILE)
    assert match, "the Dockerfile no longer verifies its entry points"
    return set(match.group(1).split())


def test_the_image_verifies_every_product_console_script() -> None:
    assert _verified_entry_points() == set(SCRIPTS) - NOT_PRODUCT


def test_the_default_command_and_what_kubernetes_runs_are_verified_entry_points() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert cmd
    commands = {yaml.safe_load(cmd.group(1))[0]}
    document = example_cluster("small")
    document["metadata"] = {"uid": "u", "namespace": "ns", **document["metadata"]}
    for obj in builders.desired_objects(parse_cluster(document), "miroir/miroir:x"):
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            if container["image"] == "miroir/miroir:x":
                commands.add(container["args"][0])
    operator = (CHART / "templates" / "deployment.yaml").read_text()
    commands.add(re.search(r"args:\n\s+- ([\w-]+)", operator).group(1))  # type: ignore[union-attr]
    assert commands == {"miroir-proxy", "miroir-operator"}
    assert commands <= _verified_entry_points()


def test_the_image_is_multi_stage_non_root_and_pinned() -> None:
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert len(bases) == 2, "a build stage and a runtime stage"
    pinned = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert pinned and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", pinned.group(1))
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and not user[-1].startswith(("0", "root"))
    assert "pip install --no-compile ." in DOCKERFILE, "runtime dependencies from pyproject.toml"
