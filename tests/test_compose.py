"""compose.yaml checked offline (Docker Compose is not needed): its services, settings, files
and the proxy configuration fit together, and HAProxy accepts the configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from live import REPO
from topology import PROXY_CONFIG, self_signed

from server.config import known_names

COMPOSE = REPO / "compose.yaml"
BACKEND = REPO / "deploy" / "haproxy-compose-backend.cfg"
EXAMPLE_ENV = REPO / "deploy" / "compose.env.example"
REQUIRED = {"FIELDCAL_DATABASE_URL", "FIELDCAL_SECRET_KEYS", "FIELDCAL_AUDIT_KEYS",
            "FIELDCAL_BUSINESS_PHONE", "FIELDCAL_BASE_URL", "FIELDCAL_TRUSTED_PROXIES"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_services_and_their_references(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"db", "app", "worker", "certs", "proxy"}
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on an unknown service {needed}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"
            else:
                assert source in compose["volumes"], f"{name} mounts an undeclared volume {source}"
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").is_file()
    assert services["app"]["deploy"]["replicas"] >= 2
    assert "--no-worker" in services["app"]["command"]
    assert services["worker"]["command"][-1] == "worker"
    assert services["proxy"]["ports"] and not services["app"].get("ports"), "only the proxy is published"


def test_hosts_and_worker_get_known_and_required_settings(compose: dict[str, Any]) -> None:
    known = set(known_names())
    for name in ("app", "worker"):
        env = compose["services"][name]["environment"]
        fieldcal = {key for key in env if key.startswith("FIELDCAL_")}
        assert fieldcal <= known, f"{name}: unknown settings {fieldcal - known} would stop the server"
        assert REQUIRED <= fieldcal, f"{name} lacks {REQUIRED - fieldcal}"
        assert "@db:5432/" in env["FIELDCAL_DATABASE_URL"]
    example = {line.split("=", 1)[0] for line in EXAMPLE_ENV.read_text().splitlines()
               if line and not line.startswith("#")}
    asked = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert asked <= example, f"the example .env lacks {asked - example}"


def test_the_proxy_configuration_fits_the_services(compose: dict[str, Any], tmp_path: Path) -> None:
    proxy = compose["services"]["proxy"]
    wanted = set(re.findall(r"\$\{(\w+)\}", PROXY_CONFIG.read_text()))
    assert wanted and wanted <= set(proxy["environment"]), wanted
    command = proxy["command"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    for index, part in enumerate(command):
        if part == "-f":
            assert command[index + 1] in mounted, f"{command[index + 1]} is not mounted"
    assert mounted["/usr/local/etc/haproxy/haproxy.cfg"] == "./deploy/haproxy.cfg"
    assert mounted["/usr/local/etc/haproxy/backend.cfg"] == "./" + str(BACKEND.relative_to(REPO))
    port = compose["services"]["app"]["command"][compose["services"]["app"]["command"].index("--port") + 1]
    assert re.search(rf"\sapp:{port}\s", BACKEND.read_text()), "the backend names the app service's port"
    bundle, _ca = self_signed(tmp_path)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FIELDCAL_PROXY_BIND": "127.0.0.1:8443",
           "FIELDCAL_PROXY_CERT": str(bundle)}
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    checked = subprocess.run([haproxy, "-c", "-f", str(PROXY_CONFIG), "-f", str(BACKEND)], env=env,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
