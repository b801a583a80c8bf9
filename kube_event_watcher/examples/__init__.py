"""The example configs, shipped in the wheel: `kube-event-watcher examples` lists them and
`kube-event-watcher examples NAME` prints one, so an installed daemon can start from one
without a source checkout (where they are also `config/*.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    summary: str  # the first comment line of the file
    text: str


def examples() -> list[Example]:
    """Every example config, by name (the file name without `.yaml`)."""
    found = []
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text(encoding="utf-8")
        first = next((line for line in text.splitlines() if line.startswith("#")), "")
        found.append(Example(entry.name.removesuffix(".yaml"), first.lstrip("# ").strip(), text))
    return sorted(found, key=lambda e: e.name)


def example(name: str) -> Example:
    """The example called `name` (`minimal` or `minimal.yaml`); KeyError names the choices."""
    wanted = name.removesuffix(".yaml")
    everything = examples()
    for found in everything:
        if found.name == wanted:
            return found
    raise KeyError(f"no example {name!r}; there are: {', '.join(e.name for e in everything)}")
