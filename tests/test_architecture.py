"""The layers of docs/architecture.md, enforced on the source: every import in chatsvc/**
(found with ast, including imports inside functions and under TYPE_CHECKING) points down
or sideways within a layer, no two packages import each other (directly or round a longer
cycle), and only the Scylla driver module imports the CQL driver."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "chatsvc"

#: Bottom to top. A unit is a subpackage of chatsvc or a top-level module ("" is chatsvc's
#: own __init__, which holds the version). A unit may import units of lower layers; units
#: of one layer may import each other only where the layer says so (``PEERS``).
LAYERS: list[set[str]] = [
    {"model"},  # the domain records and ids: imports nothing of chatsvc but itself
    {"", "errors", "settings", "metrics", "logs", "tls", "cliargs"},  # foundation modules
    {"transport"},  # python-socketio/engineio/aiohttp internals
    {"store", "bus", "auth"},  # the external systems, one adapter each
    {"chat"},  # rooms, messages, presence, moderation, recovery, the Socket.IO namespace
    {"admin", "web"},  # the gRPC admin API; HTTP health, origins, draining, static files
    {"app", "server", "cli", "__main__"},  # assembly, process, command line
]
#: Layers whose units may import each other (as long as there is no cycle).
PEERS = {1, 6}
#: Rules stricter than the layer order.
ONLY_ITSELF = {"model"}

#: Existing imports against the layers, each someone's to remove. Keep this short.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _layer_of(unit: str) -> int:
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(
        f"chatsvc/{unit or '__init__.py'} is in no layer: add it to LAYERS and docs/architecture.md"
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """``chatsvc.chat.service`` -> ``chat``; ``chatsvc.tls`` -> ``tls``; ``chatsvc`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Every chatsvc module ``path`` imports (``from chatsvc import x`` counts as chatsvc.x
    when x is a module, else as chatsvc)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if (ROOT.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or (
                    ROOT.parent / candidate.replace(".", "/") / "__init__.py"
                ).is_file():
                    found.add(candidate)
    return {name for name in found if name == "chatsvc" or name.startswith("chatsvc.")}


def _sources() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def _unit_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in _sources():
        source = _unit(_module_name(path))
        for name in _imports(path):
            target = _unit(name)
            if target != source and not (name == "chatsvc" and target == ""):
                graph[source][target].add(str(path.relative_to(ROOT.parent)))
            elif name == "chatsvc" and source != "":
                graph[source][""].add(str(path.relative_to(ROOT.parent)))
    return graph


def _violations(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    out = []
    for source, targets in sorted(graph.items()):
        for target, files in sorted(targets.items()):
            if (source, target) in KNOWN_EXCEPTIONS:
                continue
            low, high = _layer_of(target), _layer_of(source)
            if source in ONLY_ITSELF:
                what = target or "chatsvc"
                out.append(f"{source} must import nothing of chatsvc but imports {what}: {sorted(files)}")
            elif low > high or (low == high and high not in PEERS):
                out.append(f"{source} (layer {high}) imports {target} (layer {low}): {sorted(files)}")
    return out


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan), known exceptions left out."""
    edges = {s: {t for t in ts if (s, t) not in KNOWN_EXCEPTIONS} for s, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_down_the_layers() -> None:
    graph = _unit_graph()
    assert graph["chat"]["store"] and graph["app"]["chat"], "the scan must see real imports"
    assert _violations(graph) == []


def test_no_import_cycle_between_packages() -> None:
    assert _cycles(_unit_graph()) == []


def test_every_known_exception_still_exists() -> None:
    """An exception that was fixed is removed from the list, so it cannot come back unseen."""
    graph = _unit_graph()
    assert [pair for pair in KNOWN_EXCEPTIONS if not graph.get(pair[0], {}).get(pair[1])] == []


#: What of python-socketio, python-engineio and aiohttp code outside chatsvc/transport may
#: import: their public API only. Everything relying on internals lives under transport/,
#: pinned and hash-checked (chatsvc/transport/pins.py).
PUBLIC_LIBRARY_MODULES = {"socketio", "aiohttp", "aiohttp.web", "aiohttp.abc", "aiohttp.typedefs"}
#: Exceptions by unit: a pub/sub bus subclasses python-socketio's AsyncPubSubManager (its
#: documented extension point for client managers).
LIBRARY_MODULES_ALLOWED_IN = {"bus": {"socketio.async_pubsub_manager"}}
#: Attributes of python-socketio/python-engineio/aiohttp objects that are internals.
INTERNAL_ATTRIBUTES = {
    "eio",
    "manager_initialized",
    "next_id",
    "_async",
    "_writer",
    "_send_packet",
    "_send_eio_packet",
    "_trigger_event",
    "_engineio_server_class",
}
_LIBRARIES = ("socketio", "engineio", "aiohttp")


def _library_violations(where: str, unit: str, source: str) -> list[str]:
    """What ``source`` (the file ``where`` of ``unit``) uses of library internals."""
    allowed = PUBLIC_LIBRARY_MODULES | LIBRARY_MODULES_ALLOWED_IN.get(unit, set())
    found: list[str] = []
    for node in ast.walk(ast.parse(source, where)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
            # ``from socketio import packet`` imports the module socketio.packet.
            names += [f"{node.module}.{a.name}" for a in node.names if a.name[:1].islower()]
        elif isinstance(node, ast.Attribute) and (
            node.attr in INTERNAL_ATTRIBUTES or node.attr.startswith("_handle_")
        ):
            found.append(f"{where}:{node.lineno} uses .{node.attr}")
        for name in names:
            if name.split(".")[0] in _LIBRARIES and name not in allowed:
                found.append(f"{where}:{node.lineno} imports {name}")
    return found


def test_only_transport_relies_on_library_internals() -> None:
    outside = [p for p in _sources() if _unit(_module_name(p)) != "transport"]
    assert len(outside) > 20, "the scan must see files"
    found = [
        v
        for p in outside
        for v in _library_violations(str(p.relative_to(ROOT.parent)), _unit(_module_name(p)), p.read_text())
    ]
    assert found == []


def test_the_library_check_catches_internals() -> None:
    probe = (
        "from socketio import packet\nimport engineio\n"
        "from socketio.async_pubsub_manager import AsyncPubSubManager\n"
        "def f(sio):\n    return sio.eio, sio._handle_connect\n"
    )
    found = _library_violations("chatsvc/chat/probe.py", "chat", probe)
    assert not _library_violations("chatsvc/bus/probe.py", "bus", "import socketio.async_pubsub_manager\n")
    assert [v.split(" ", 1)[1] for v in found] == [
        "imports socketio.packet",
        "imports engineio",
        "imports socketio.async_pubsub_manager",
        "uses .eio",
        "uses ._handle_connect",
    ], found


def test_only_the_scylla_driver_module_imports_the_cql_driver() -> None:
    importers = sorted(
        {
            str(p.relative_to(ROOT.parent))
            for p in _sources()
            for node in ast.walk(ast.parse(p.read_text()))
            if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "cassandra" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cassandra")
        }
    )
    assert importers == ["chatsvc/store/scylla/driver.py"]


def test_only_the_kafka_adapter_modules_import_aiokafka() -> None:
    importers = sorted(
        {
            str(p.relative_to(ROOT.parent))
            for p in _sources()
            for node in ast.walk(ast.parse(p.read_text()))
            if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "aiokafka" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "aiokafka")
        }
    )
    assert importers == [
        "chatsvc/bus/kafka.py",
        "chatsvc/bus/kafka_client.py",
        "chatsvc/bus/kafka_history.py",
        "chatsvc/bus/kafka_log.py",
        "chatsvc/bus/kafka_retention.py",
        "chatsvc/bus/notify_kafka.py",
    ]


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"store": {"chat": {"chatsvc/store/x.py"}}}, "store (layer 3) imports chat (layer 4)"),
        ({"bus": {"auth": {"chatsvc/bus/x.py"}}}, "bus (layer 3) imports auth (layer 3)"),
        ({"transport": {"chat": {"chatsvc/transport/x.py"}}}, "transport (layer 2) imports chat"),
        ({"model": {"errors": {"chatsvc/model/x.py"}}}, "model must import nothing of chatsvc"),
        (
            {"settings": {"transport": {"chatsvc/settings/root.py"}}},
            "settings (layer 1) imports transport (layer 2)",
        ),
    ],
)
def test_the_checker_catches_each_kind_of_violation(
    edges: dict[str, dict[str, set[str]]], expected: str
) -> None:
    violations = _violations(edges)
    assert len(violations) == 1 and violations[0].startswith(expected), violations


def test_the_checker_finds_cycles_and_new_units() -> None:
    loop = {"app": {"cli": {"a"}}, "cli": {"server": {"b"}}, "server": {"app": {"c"}}}
    assert _cycles(loop) == [["app", "cli", "server"]]
    with pytest.raises(AssertionError, match="in no layer"):
        _violations({"newthing": {"errors": {"chatsvc/newthing.py"}}})
