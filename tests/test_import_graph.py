"""The package's import graph: no cycles, and importing keras_pose imports no TensorFlow.

The graph is read statically (AST) from every module under keras_pose/, with
imports inside functions counted too: a lazy import that closes a cycle is
still a cycle in the design.
"""
import ast
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PKG = REPO / "keras_pose"
# Cycles still to be untangled, listed so that the test keeps every other module
# acyclic and fails as soon as one of these is gone (then delete it here).
# skeleton <-> keypoint_file/keypoint_specs: KeypointSpec completes itself with
# keypoint_file's helpers, which build KeypointSpecs (function-level imports).
KNOWN_CYCLES = [["keras_pose.keypoint_file", "keras_pose.keypoint_specs", "keras_pose.skeleton"]]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(name: str, modules: dict):
    """The keras_pose module that ``import name`` loads (a name inside a module -> the module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _edges(modules: dict) -> dict:
    """{module: set of keras_pose modules it imports} (package __init__ lazy tables excluded:
    they name modules as strings and import on attribute access only)."""
    graph = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # "from a.b import c" may import the submodule a.b.c.
                names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            else:
                continue
            for n in names:
                if n.startswith("keras_pose"):
                    target = _resolve(n, modules)
                    if target and target != mod:
                        deps.add(target)
        graph[mod] = deps
    return graph


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _parents(mod: str) -> set:
    parts = mod.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_module_imports_a_module_that_imports_it_back():
    modules = _modules()
    graph = _edges(modules)
    # A package's __init__ runs before its submodules, and submodules importing
    # their own package are not design cycles: drop edges into an own parent.
    graph = {m: {d for d in deps if d not in _parents(m)} for m, deps in graph.items()}
    assert len(graph) > 40 and graph["keras_pose.inference.loader"]
    assert _cycles(graph) == KNOWN_CYCLES


def test_the_graph_reader_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    modules = _modules()
    graph = _edges(modules)
    assert "keras_pose.geometry" in graph["keras_pose.data.crops"]
    assert "keras_pose.io" in graph["keras_pose.inference.predictor"]


def test_layers_data_and_inference_stand_on_geometry_not_on_each_other():
    graph = _edges(_modules())
    for mod, deps in graph.items():
        if mod.startswith("keras_pose.data"):
            assert not any(d.startswith("keras_pose.inference") for d in deps), (mod, deps)
        if mod.startswith("keras_pose.inference"):
            assert not any(d.startswith(("keras_pose.data", "keras_pose.evaluation"))
                           for d in deps), (mod, deps)


def test_import_keras_pose_imports_no_tensorflow():
    code = ("import sys, keras_pose, keras_pose.inference, keras_pose.descriptor\n"
            "from keras_pose import load, RunDescriptor, Poses\n"
            "import keras_pose.inference.loader, keras_pose.inference.tflite_runner\n"
            "import keras_pose.evaluation.topdown\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_keras'))\n"
            "assert not bad, bad[:5]\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
