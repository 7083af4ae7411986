"""The written architecture: the import-linter contracts hold, and they would catch a break.

CI runs ``lint-imports`` on the tree; these tests show that each contract fails when the
rule it states is broken, on a copy of the package with one bad import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reactor"


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(command), "--no-cache", "--no-logo"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_every_private_module_is_forbidden_to_plugins() -> None:
    private = {
        f"reactor.{path.stem}"
        for path in PACKAGE.iterdir()
        if path.name.startswith("_")
        and not path.name.startswith("__")
        and (path.suffix == ".py" or (path / "__init__.py").exists())
    }
    forbidden = set(_contracts()["plugins-use-public-api"]["forbidden_modules"])
    assert private == forbidden


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "text", "contract"),
    [
        pytest.param(
            "reactor/sources/rogue.py",
            "from reactor._event import Event\n",
            "Plugins (sources, queues) and the benchmarks use only the public API",
            id="plugin-imports-private",
        ),
        pytest.param(
            "reactor/queues/rogue.py",
            "from reactor._reactor import Reactor\n",
            "Plugins (sources, queues) and the benchmarks use only the public API",
            id="queue-imports-facade",
        ),
        pytest.param(
            "benchmarks/rogue.py",
            "from reactor._dispatch import Dispatcher\n",
            "Plugins (sources, queues) and the benchmarks use only the public API",
            id="benchmark-imports-private",
        ),
        pytest.param(
            "reactor/abc.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from reactor._reactor import Reactor\n",
            "Layers: model -> contracts -> engine -> facade -> CLI",
            id="contracts-import-facade-for-types",
        ),
        pytest.param(
            "reactor/_dispatch.py",
            "from reactor.queues.memory import MemoryQueue\n",
            "The dispatcher never imports a queue or a source",
            id="dispatcher-imports-queue",
        ),
    ],
)
def test_a_broken_rule_fails_lint_imports(
    tmp_path: Path, module: str, text: str, contract: str
) -> None:
    for package in ("reactor", "benchmarks"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")

    target = tmp_path / module
    target.write_text((target.read_text() if target.exists() else "") + text)
    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract}" in result.stdout
    assert "BROKEN" in result.stdout
