"""`miroir-operator`: run the operator, or show offline what it would create.

- `miroir-operator render FILE`: the child objects of the MiroirCluster in FILE, as YAML
  documents, from the same builders the operator applies (no cluster needed);
- `miroir-operator crd`: the CustomResourceDefinition;
- `miroir-operator run`: the kopf operator (in a pod, or against the current kubeconfig).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import crd
from .builders import DEFAULT_PROXY_IMAGE, desired_objects
from .spec import parse_cluster

PROXY_IMAGE_ENV = "MIROIR_PROXY_IMAGE"
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def _documents(path: str) -> Iterator[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    for document in yaml.safe_load_all(text):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise crd.InvalidSpec(f"{path}: every YAML document must be a mapping")
        yield document


def render(path: str, proxy_image: str) -> str:
    out: list[dict[str, Any]] = []
    found = False
    for document in _documents(path):
        if document.get("apiVersion") != crd.API_VERSION or document.get("kind") != crd.KIND:
            continue
        found = True
        # Offline there is no uid yet; the API server assigns it on create.
        metadata = {"uid": PLACEHOLDER_UID, **(document.get("metadata") or {})}
        body = {**document, "metadata": metadata}
        out.extend(desired_objects(parse_cluster(body), proxy_image))
    if not found:
        raise crd.InvalidSpec(f"{path}: no {crd.API_VERSION} {crd.KIND} found")
    return dump_all(out)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings (the proxy's configuration) as readable `|` blocks."""
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_NoAliases.add_representer(str, _text)


def dump_all(objects: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objects, Dumper=_NoAliases, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="miroir-operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="print the objects a MiroirCluster owns")
    render_cmd.add_argument("file", help="YAML file with a MiroirCluster ('-' for stdin)")
    render_cmd.add_argument(
        "--proxy-image",
        default=os.environ.get(PROXY_IMAGE_ENV, DEFAULT_PROXY_IMAGE),
        help=f"proxy image when spec.proxy.image is unset (env {PROXY_IMAGE_ENV})",
    )
    commands.add_parser("crd", help="print the MiroirCluster CustomResourceDefinition")
    run_cmd = commands.add_parser("run", help="run the operator")
    run_cmd.add_argument(
        "--namespace", action="append", default=[], help="watch only these namespaces"
    )
    run_cmd.add_argument("--log-level", default="INFO")
    run_cmd.add_argument(
        "--proxy-image",
        default=os.environ.get(PROXY_IMAGE_ENV, DEFAULT_PROXY_IMAGE),
        help=f"proxy image when spec.proxy.image is unset (env {PROXY_IMAGE_ENV})",
    )
    args = parser.parse_args(argv)
    if args.command == "render":
        try:
            sys.stdout.write(render(args.file, args.proxy_image))
        except (crd.InvalidSpec, OSError, yaml.YAMLError) as exc:
            sys.stderr.write(f"miroir-operator render: {exc}\n")
            raise SystemExit(2) from None
    elif args.command == "crd":
        sys.stdout.write(dump_all([crd.manifest()]))
    else:
        from .handlers import OperatorConfig
        from .main import run

        run(args.namespace, args.log_level, OperatorConfig(proxy_image=args.proxy_image))
