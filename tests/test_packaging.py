"""Packaging: the locks agree with each other and with what is installed, every import is
declared, and the office PC's agent needs none of the hub's packages.

The agent's install is ``requirements/station.txt`` plus Jaga with ``--no-deps``
(docs/station.md). "Hub-only" below means a distribution the ``hub`` extra declares that is
not in ``requirements/station.txt``, so the check follows pyproject.toml and the locks rather
than a list kept by hand. (Their own dependencies are not counted: here, where the hub is
installed too, a library's optional import such as dnspython's ``idna`` succeeds; in the
office PC's own venv, which the last test runs the agent from, nothing else is installed.)
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests.kit import RunningHub, timeout, wait_until
from tests.locked import _normalise

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
FIRST_PARTY = {"jaga", "hub", "clients", "pendopo_wall", "bench", "tests"}
AGENT_PACKAGES = ("jaga", "clients")


def lock(name: str) -> dict[str, str]:
    """Distribution → version for the pins of one lock that apply to this interpreter."""
    pins: dict[str, str] = {}
    for line in (LOCKS / f"{name}.txt").read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", line)
        if found and (found.group(3) is None or Marker(found.group(3)).evaluate()):
            pins[_normalise(found.group(1))] = found.group(2)
    return pins


def declared(*groups: str) -> set[str]:
    """Distributions named in pyproject.toml: "" is the base dependencies, else an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for group in groups:
        specs = project["dependencies"] if group == "" else project["optional-dependencies"][group]
        names |= {_normalise(re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0]) for spec in specs}
    return names


def imported_top_level(*packages: str) -> set[str]:
    """Top-level modules imported anywhere in these packages' source (static, every branch)."""
    modules: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules - FIRST_PARTY - set(sys.stdlib_module_names)


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """Top-level module → the distributions that provide it (as installed here)."""
    provided = packages_distributions()
    return {module: {_normalise(d) for d in provided.get(module, [])} for module in modules}


def test_station_and_hub_locks_pin_the_dev_locks_versions() -> None:
    dev = lock("dev")
    for name in ("station", "hub"):
        pins = lock(name)
        assert pins, f"requirements/{name}.txt pins nothing"
        assert {d: v for d, v in pins.items() if dev.get(d) != v} == {}, f"{name} lock differs from the dev lock"


def test_installed_versions_are_the_locked_ones() -> None:
    if os.environ.get("JAGA_LATEST") == "1":
        pytest.skip("make test-latest runs today's releases on purpose")
    installed = {d: version(d) for d in lock("dev")}
    assert {d: (v, installed[d]) for d, v in lock("dev").items() if installed[d] != v} == {}


def test_every_imported_package_is_declared_where_it_is_used() -> None:
    # Declared directly, not reached through another package's dependencies (aioice came
    # with aiortc, but the seams import it themselves).
    uses = ((AGENT_PACKAGES, declared("")),
            (("hub", "pendopo_wall"), declared("", "hub")),
            (("tests",), declared("", "hub", "test")),
            (("bench",), declared("", "hub", "test", "bench")))
    for packages, allowed in uses:
        undeclared = {module: dists for module, dists in distributions_of(imported_top_level(*packages)).items()
                      if not dists & allowed}
        assert undeclared == {}, f"{packages} import packages pyproject.toml does not declare for them"


def test_the_base_install_is_the_agents_and_the_hub_extra_adds_the_hub() -> None:
    station, hub = set(lock("station")), set(lock("hub"))
    for name in ("starlette", "uvicorn", "redis", "prometheus-client", "holidays"):
        assert name in hub and name not in station
    assert declared("") <= station


IMPORT_ALL = """
import importlib, json, pkgutil, sys
for package in sys.argv[1:]:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith(".__main__"):  # runs the CLI
            importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_top_level(*packages: str) -> set[str]:
    """Top-level modules in sys.modules after importing every module of these packages, in a
    fresh interpreter (so nothing this test process loaded counts)."""
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, *packages], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def hub_only_loaded(modules: set[str]) -> dict[str, set[str]]:
    hub_only = declared("hub") - set(lock("station"))
    found = {m: dists & hub_only for m, dists in distributions_of(modules - FIRST_PARTY).items()}
    return {m: dists for m, dists in found.items() if dists}


def test_the_agents_import_graph_reaches_no_hub_package() -> None:
    loaded = loaded_top_level(*AGENT_PACKAGES)
    assert "aiortc" in loaded and "clients" in loaded  # it really imported the agent
    assert "hub" not in loaded
    assert hub_only_loaded(loaded) == {}


def test_the_hub_only_check_sees_the_hubs_packages() -> None:
    # The same check on the hub must find its packages, or the agent's test above proves nothing.
    found = hub_only_loaded(loaded_top_level("hub"))
    assert {"starlette", "uvicorn", "redis", "prometheus_client", "holidays"} <= set(found)


STATION_VENV = ROOT / ".venv-station"


@pytest.fixture
def station_venv() -> Path:
    """The office PC's venv, as docs/station.md installs it (built by `make station`; .ci/run
    builds it, so on CI a missing one fails the run like any other skip)."""
    if not (STATION_VENV / ".installed").exists():
        pytest.skip("no .venv-station: run `make station`")
    return STATION_VENV / "bin"


def test_the_office_pc_install_has_no_hub_packages(station_venv: Path) -> None:
    listed = subprocess.run([station_venv / "python", "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, check=True)
    installed = {_normalise(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    assert {name: v for name, v in lock("station").items() if installed.get(name) != v} == {}
    assert not {"starlette", "uvicorn", "redis", "prometheus-client", "holidays"} & set(installed)
    # The hub's command is there (one project) but says what is missing instead of a traceback.
    refused = subprocess.run([station_venv / "jaga-hub", "stations", "list"], capture_output=True, text=True,
                             cwd=ROOT)
    assert refused.returncode == 2
    assert "needs the hub's packages" in refused.stderr and "Traceback" not in refused.stderr


async def test_the_office_pc_install_goes_live(station_venv: Path, hub: RunningHub, tmp_path: Path) -> None:
    station = "35.09.01.2001"
    token_file = tmp_path / "token.txt"
    token_file.write_text(await hub.token(station) + "\n")
    config = tmp_path / "station.toml"
    config.write_text('[network]\nhost_addresses = ["127.0.0.1"]\n')
    agent = await asyncio.create_subprocess_exec(
        station_venv / "jaga-station", "--config", str(config), "--hub", hub.http, "--station", station,
        "--token-file", str(token_file), "--source", "test", "--always-on", "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    try:
        await wait_until(lambda: hub.hub.stations.table.get(station).state == "live", timeout=30,
                         message=f"{station} live from the office-PC venv")
    finally:
        agent.terminate()
        _, stderr = await asyncio.wait_for(agent.communicate(), timeout(15))
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
