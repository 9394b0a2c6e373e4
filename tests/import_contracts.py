"""import-linter contract types of this project (configured in ``pyproject.toml``).

``private_names``: a module never imports another module's ``_private`` names (functions, classes,
constants). What is shared across modules is public inside the package. Private *modules* are checked by
import-linter's own ``private_modules`` contract; this one looks at the names, which the import graph does
not hold, by reading each importing module's source.
"""

from __future__ import annotations

import ast
import importlib.util

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class PrivateNamesContract(Contract):
    """No ``from other_module import _name`` between the modules of ``packages``.

    Configuration options:

        - packages: the packages whose modules are checked (each module's imports of names from any
          module of these packages).
    """

    type_name = "private_names"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        packages = [str(p) for p in self.packages]  # type: ignore[attr-defined]
        violations = []
        for module in sorted(graph.modules):
            if not any(module == p or module.startswith(p + ".") for p in packages):
                continue
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                continue
            with open(spec.origin, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), filename=spec.origin)
            is_package = spec.origin.endswith("__init__.py")
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom):
                    continue
                source = _absolute(node, module, is_package)
                if source is None or source == module:
                    continue
                if not any(source == p or source.startswith(p + ".") for p in packages):
                    continue
                for alias in node.names:
                    name = alias.name
                    private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
                    if private and f"{source}.{name}" not in graph.modules:
                        violations.append(f"{module}:{node.lineno} imports {name} from {source}")
        return ContractCheck(kept=not violations, warnings=[], metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["violations"]:
            output.print_error(line)
        output.new_line()
        output.print("Make the name public in its module (drop the underscore) or move it where both use it.")


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))
