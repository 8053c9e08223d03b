"""The opt-in kind suite (`make e2e`): a real Kubernetes in Docker, the chart, the image
built from the Dockerfile and real Meilisearch nodes.

It needs a reachable Docker daemon, `kind` and `kubectl` on PATH; without them every test
skips with the reason. Nothing is downloaded here: pytest-kind would fetch kind and kubectl
itself, so the suite hands it the binaries it found or does not start.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE = "miroir/miroir:e2e"
MEILISEARCH = "getmeili/meilisearch:v1.50.0"
CLUSTER = "miroir-e2e"


def missing_tools() -> str | None:
    """Why this machine cannot run the suite, or None when it can."""
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    try:
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=20)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return "the Docker daemon is not reachable (`docker info` fails)"
    return None


@pytest.fixture(scope="session")
def kind_cluster() -> Iterator[Any]:
    reason = missing_tools()
    if reason is not None:
        pytest.skip(f"kind suite needs Docker and kind: {reason}")
    from pytest_kind import KindCluster

    subprocess.run(["docker", "build", "-t", IMAGE, str(REPO)], check=True, timeout=1200)
    subprocess.run(["docker", "pull", MEILISEARCH], check=True, timeout=600)
    cluster = KindCluster(
        CLUSTER,
        kind_path=Path(shutil.which("kind") or "kind"),
        kubectl_path=Path(shutil.which("kubectl") or "kubectl"),
    )
    cluster.create()
    try:
        cluster.load_docker_image(IMAGE)
        cluster.load_docker_image(MEILISEARCH)
        yield cluster
    finally:
        cluster.delete()
