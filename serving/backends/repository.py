"""Which versions are served, and the lookup of a request's servable (TF Serving's rules)."""

from __future__ import annotations

import re
from pathlib import Path

from serving.backends.base import Servable
from serving.errors import InvalidArgument, NotFound


def version_policy(models_config: Path, name: str):
    """``(kind, values)`` of ``name``'s ``model_version_policy`` in a TF Serving
    model config file: ``("all", ())``, ``("latest", (n,))`` or ``("specific",
    (v, ...))``; TF Serving's default ``("latest", (1,))`` when none is given."""
    if not models_config.is_file():
        return "latest", (1,)
    text = re.sub(r"#[^\n]*", "", models_config.read_text())
    for block in re.split(r"\bconfig\s*\{", text)[1:]:
        if not re.search(r'name\s*:\s*"' + re.escape(name) + '"', block):
            continue
        policy = re.search(r"model_version_policy\s*\{\s*(all|latest|specific)\s*\{([^}]*)\}", block)
        if not policy:
            break
        kind, body = policy.groups()
        numbers = tuple(int(n) for n in re.findall(r"\d+", body))
        return kind, (numbers or (1,)) if kind == "latest" else numbers
    return "latest", (1,)


def served_versions(available: list[int], policy) -> list[int]:
    kind, values = policy
    if kind == "all":
        return sorted(available)
    if kind == "specific":
        return sorted(v for v in available if v in values)
    return sorted(available)[-values[0] :] if values[0] > 0 else []


class Repository:
    """Model name -> version -> ``Servable``; TF Serving's lookup rules and messages."""

    def __init__(self, servables: list[Servable]):
        self.models: dict[str, dict[int, Servable]] = {}
        for servable in servables:
            self.models.setdefault(servable.name, {})[servable.version] = servable

    @property
    def platform(self) -> str:
        return next(s for versions in self.models.values() for s in versions.values()).platform

    def versions(self, name: str) -> list[int]:
        if name not in self.models:
            raise NotFound(f"Could not find any versions of model {name}")
        return sorted(self.models[name])

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request; the newest version without ``version``."""
        if label is not None:
            # No version labels are configured (TF Serving answers an unknown label so).
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        versions = self.models.get(name)
        if not versions:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise NotFound(f"Servable not found for request: {request}")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return versions[version]

    def servables(self) -> list[Servable]:
        return [s for versions in self.models.values() for s in versions.values()]

    def close(self) -> None:
        for servable in self.servables():
            servable.close()
