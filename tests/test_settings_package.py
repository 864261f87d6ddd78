"""chatsvc.settings as a package: it exports what the single module did, and its modules
import each other in one direction (model at the bottom, root at the top)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import chatsvc.settings

PACKAGE = Path(chatsvc.settings.__file__).parent

#: The public names of chatsvc/settings.py before it became a package; every
#: ``from chatsvc.settings import X`` in the code, tests, bench and scripts uses some of them.
EXPORTS = {
    "BLOCKLIST_MAX_BYTES",
    "BLOCKLIST_MAX_ENTRIES",
    "BLOCKLIST_PATTERN_MAX",
    "BLOCKLIST_PROBE",
    "CASHTAG_PATTERN",
    "CONSISTENCY_LEVELS",
    "FAST_PATHS",
    "JWT_HMAC_ALGORITHMS",
    "JWT_JWKS_ALGORITHMS",
    "JWT_PUBLIC_KEY_ALGORITHMS",
    "SASL_MECHANISMS",
    "STORE_BACKENDS",
    "GrpcSettings",
    "JwtSettings",
    "KafkaSettings",
    "Limits",
    "ModeSettings",
    "ScyllaSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "SpamSettings",
    "TlsFiles",
    "load_blocklist",
}


def _chatsvc_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "chatsvc"}


def test_the_package_exports_every_name_the_module_had() -> None:
    assert set(chatsvc.settings.__all__) == EXPORTS
    assert [name for name in EXPORTS if not hasattr(chatsvc.settings, name)] == []


def test_the_modules_import_each_other_without_a_cycle() -> None:
    graph = {
        path.stem: {name.rpartition(".")[2] for name in _chatsvc_imports(path)}
        for path in PACKAGE.glob("*.py")
        if path.stem != "__init__"
    }
    assert {"model", "reader", "root", "blocklist"} <= set(graph), "the scan must see the modules"
    # Nothing outside the package: settings sits in the foundation layer under everyone.
    assert {n for path in PACKAGE.glob("*.py") for n in _chatsvc_imports(path)} <= {
        f"chatsvc.settings.{stem}" for stem in graph
    }
    assert graph["model"] == set()
    assert graph["root"] >= {n for n in graph if n.startswith("read_")}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle in chatsvc/settings: {exc.args[1]}") from None
    assert order[-1] == "root"
