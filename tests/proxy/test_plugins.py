"""`miroir-proxy --plugin MODULE`: a module that cannot be set up stops the proxy before it
starts, with a message naming it. (What a plugin can do — routes, a job kind registered with
the pod's Coordination, a leader kept under a lease — is what the scaffold plugin does in
`test_jobs_admin.py`, `test_lease_demo.py` and `multipod/`.)"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from miroir_proxy.api.app import make_app
from miroir_proxy.api.plugins import PluginError
from miroir_proxy.cli.processes import resolve_proxy_binary
from miroir_proxy.config import from_mapping

CONFIG = {
    "replica_groups": [{"id": "g0", "nodes": [{"id": "n0", "url": "http://127.0.0.1:9"}]}],
}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("no_such_plugin_module", "plugin 'no_such_plugin_module' cannot be imported"),
        ("json", "plugin 'json' has no setup(app) function"),
    ],
)
def test_make_app_refuses_a_plugin_it_cannot_set_up(module: str, message: str) -> None:
    with pytest.raises(PluginError, match=re.escape(message)):
        make_app(from_mapping(CONFIG, env={}), plugins=[module])


def test_the_proxy_exits_with_a_usage_error_for_a_bad_plugin(tmp_path: Path) -> None:
    config = tmp_path / "miroir.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "state_path": str(tmp_path / "state.sqlite3")}))
    done = subprocess.run(
        [resolve_proxy_binary(), "--config", str(config), "--plugin", "no_such_plugin_module"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "plugin 'no_such_plugin_module' cannot be imported" in done.stderr


def test_help_documents_the_plugin_option() -> None:
    done = subprocess.run(
        [resolve_proxy_binary(), "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "--plugin MODULE" in done.stdout
    assert "setup(app)" in done.stdout
