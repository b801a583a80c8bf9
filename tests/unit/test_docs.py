"""What the docs say is what the program does: every config shown validates, every command
line shown parses, every example config passes `check-config`, every key and metric named
exists.

A YAML block that is not a whole daemon config (a Kubernetes manifest, a matcher shown on
its own) says so on the line before its fence: `<!-- fragment: why -->`.
"""

from __future__ import annotations

import contextlib
import io
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kube_event_watcher.cli import main
from kube_event_watcher.config import model as config_model
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.config.schema import Config
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.ops.metrics import METRICS

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FRAGMENT = re.compile(r"<!--\s*fragment:\s*\S.*-->\s*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> Iterator[Block]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        fragment = bool(_FRAGMENT.search(before))
        yield Block(path, line, match.group(1), match.group(2), fragment)


YAML_BLOCKS = [b for path in DOCS for b in fenced_blocks(path) if b.lang in ("yaml", "yml")]


def stand_in_env(text: str) -> dict[str, str]:
    """A value for each `${VAR}` the text uses (what the operator would export)."""
    return {name: f"doc-value-{name.lower()}-0123456789" for name in _ENV_REF.findall(text)}


@pytest.fixture
def secret_files_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs name secret files on the operator's machine (/etc/kube-event-watcher/...);
    here those do not exist: a missing one reads as a stand-in secret, an existing one for
    real."""
    real = config_model.read_secret_file

    def read(path: str) -> str:
        if Path(path).expanduser().exists():
            return real(path)
        name = Path(path).name
        if name.endswith(".url"):
            return f"https://hooks.example.com/stand-in/{name}"
        if name.startswith("webhook"):  # a Standard Webhooks secret
            return "whsec_c3RhbmQtaW4tc2lnbmluZy1zZWNyZXQtb2YtMzItYnl0ZXM="
        return f"stand-in-secret-read-from-{name}"

    monkeypatch.setattr(config_model, "read_secret_file", read)


def test_the_docs_show_daemon_configs_at_all() -> None:
    configs = [b for b in YAML_BLOCKS if not b.fragment]
    assert len(configs) >= 8, [b.where for b in configs]
    assert any(b.path.name == "README.md" for b in configs)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.where)
@pytest.mark.usefixtures("secret_files_stand_in")
def test_every_yaml_block_is_a_valid_config_or_says_it_is_a_fragment(block: Block) -> None:
    document = yaml.safe_load(block.text)  # a fragment must still be YAML
    if block.fragment:
        return
    assert isinstance(document, dict), f"{block.where}: not a config; mark it as a fragment"
    unknown = set(document) - set(Config.model_fields)
    assert not unknown, f"{block.where}: {sorted(unknown)} are not config sections"
    try:
        parse_config(document, block.where, config_models(), env=stand_in_env(block.text))
    except ConfigError as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.usefixtures("secret_files_stand_in")
def test_every_example_config_passes_check_config(
    example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in stand_in_env(example.read_text()).items():
        monkeypatch.setenv(name, value)
    code = main(["check-config", "-c", str(example)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"# {example}: valid\n")
    for name, value in stand_in_env(example.read_text()).items():
        if any(word in name for word in ("TOKEN", "SECRET", "KEY", "PASSWORD", "URL")):
            assert value not in captured.out  # secrets from the environment stay masked


# --- command lines -----------------------------------------------------------------------

_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_COMMAND = re.compile(r"(?:^|(?<=[\s`$(/]))kube-event-watcher[ \t]+([a-z][a-z-]*)([^\n`]*)")
# Where a command line shown in prose or a transcript ends: a comment, a table cell, a
# sentence going on, the next command.
_COMMAND_END = re.compile(r"\s#|\s\|\s|[;:,]\s|\s\(|\skube-event-watcher\s")
_MAKE_ARGS = re.compile(r"make (run|demo) ARGS=[\"']([^\"'\n]*)[\"']")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def code_spans(path: Path) -> Iterator[str]:
    """The text of every fenced block (but YAML and templates) and every inline code span."""
    text = path.read_text(encoding="utf-8")
    for block in fenced_blocks(path):
        if block.lang not in ("yaml", "yml", "jinja"):
            # A command continued on the next line (`\` or an indented `[--option]`).
            yield re.sub(r"\\\n\s*|\n\s+(?=\[)", " ", block.text)
    prose = _FENCE.sub("", text)
    yield from _INLINE_CODE.findall(prose)
    yield from re.findall(r"^ {4,}(\S.*)$", prose, re.MULTILINE)  # indented code blocks


def shown_commands() -> list[tuple[str, str, str]]:
    """(doc, subcommand, the rest of its command line) for each command line shown."""
    found = []
    for path in DOCS:
        for span in code_spans(path):
            for match in _COMMAND.finditer(span):
                if re.search(r"(?:-n|--namespace)\s+$", span[: match.start()]):
                    continue  # kubectl -n kube-event-watcher ...: the namespace
                rest = _COMMAND_END.split(match.group(2), maxsplit=1)[0]
                found.append((path.name, match.group(1), rest))
            for match in _MAKE_ARGS.finditer(span):
                found.append((path.name, match.group(1), match.group(2)))
    return found


def help_text(*args: str) -> str:
    """What `kube-event-watcher ARGS --help` prints."""
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
        main([*args, "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def subcommands() -> set[str]:
    usage = help_text()
    match = re.search(r"\{([a-z,-]+)\}", usage)
    assert match, usage
    return set(match.group(1).split(","))


def test_the_docs_show_every_subcommand() -> None:
    shown = {sub for _, sub, _ in shown_commands()}
    assert subcommands() <= shown


def test_every_command_line_in_the_docs_exists_in_the_parser() -> None:
    known = subcommands()
    flags = {sub: set(_FLAG.findall(help_text(sub))) for sub in known}
    wrong = []
    for doc, sub, rest in shown_commands():
        if sub not in known:
            wrong.append(f"{doc}: kube-event-watcher {sub}: no such subcommand")
            continue
        for flag in _FLAG.findall(rest):
            if flag not in flags[sub]:
                wrong.append(f"{doc}: kube-event-watcher {sub} {flag}: no such option")
    assert not wrong


# --- keys and metrics --------------------------------------------------------------------

_KEY_PATH = re.compile(r"^([a-z_]+)((?:\[\d*\]|\.[a-z_]+)+)(?::\s.*)?$")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _receiver_fields() -> set[str]:
    fields = set()
    for model in config_models().values():
        fields |= set(model.model_fields)
        fields |= {f"{name}_file" for name in getattr(model, "secret_fields", ())}
    return fields


def key_exists(path: str) -> bool:
    """Whether a dotted key path (`aggregation.group.wait`, `sources[].startup_max_age`)
    names a config key."""
    names = [p for p in re.split(r"\[\d*\]|\.", path) if p]
    models: list[type[BaseModel]] = [Config]
    for i, name in enumerate(names):
        if i == 1 and names[0] == "receivers":
            return name in _receiver_fields() and len(names) == 2
        holder = next((m for m in models if name in m.model_fields), None)
        if holder is None:
            return False
        models = _models_in(holder.model_fields[name].annotation)
        if not models and i < len(names) - 1:
            return False
    return True


def named_key_paths() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for span in _INLINE_CODE.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
            match = _KEY_PATH.match(span.strip())
            if match and match.group(1) in Config.model_fields:
                found.append((path.name, match.group(1) + match.group(2)))
    return found


def test_every_config_key_path_named_in_the_docs_exists() -> None:
    named = named_key_paths()
    assert len(named) >= 10  # the pattern still finds them
    assert [f"{doc}: {key}" for doc, key in named if not key_exists(key)] == []


def _platform_rows(text: str) -> Iterator[tuple[str, str]]:
    """(type, the keys it is said to have) from the tables and lists naming receivers."""
    keys_table = False
    for line in text.splitlines():
        if line.startswith("| "):
            keys_table = keys_table or line.startswith("| type | keys |")
        else:
            keys_table = False
        match = re.match(r"^(?:\| |- )`([a-z]+)`(?: \||:) (.*)$", line)
        if not match or match.group(1) not in config_models():
            continue
        if line.startswith("|") and keys_table:
            yield match.group(1), match.group(2).split(" | ")[0]
        elif line.startswith("- "):
            yield match.group(1), match.group(2)


def test_every_receiver_key_listed_in_the_docs_exists() -> None:
    wrong, checked = [], 0
    for path in DOCS:
        if path.name.endswith("zh-CN.md"):
            continue
        for kind, keys in _platform_rows(path.read_text(encoding="utf-8")):
            model = config_models()[kind]
            known = set(model.model_fields) | {f"{n}_file" for n in model.secret_fields}
            # What is in parentheses are values and defaults, not keys.
            for key in _INLINE_CODE.findall(re.sub(r"\([^()]*\)", "", keys)):
                if re.fullmatch(r"[a-z_]+", key):
                    checked += 1
                    if key not in known:
                        wrong.append(f"{path.name}: {kind}.{key}")
    assert checked >= 40
    assert wrong == []


_METRIC = re.compile(r"`(?:kew_)?([a-z_]+)(?:\{([^}`]*)\})?`")


def test_every_metric_in_the_docs_exists_with_its_labels_and_every_metric_is_documented() -> None:
    specs = {spec.name: spec for spec in METRICS.values()}
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("Metrics (all prefixed `kew_`):", 1)[1].split("\n\n", 1)[0]
    documented = set()
    for match in _METRIC.finditer(section):
        name, labels = match.group(1), match.group(2) or ""
        full = f"kew_{name}"
        assert full in specs, f"{full} is documented but not a metric"
        documented.add(full)
        named = set(re.findall(r"([a-z_]+)(?:=\"[^\"]*\")?,?", labels))
        assert named <= set(specs[full].labels), f"{full}: labels {sorted(named)}"
    for path in DOCS:
        for name in re.findall(r"\bkew_[a-z_]+\b", path.read_text(encoding="utf-8")):
            assert name.rstrip("_") in specs or name == "kew_", f"{path.name}: {name}"
    assert set(specs) - documented == set()


# --- transcripts -------------------------------------------------------------------------


def transcript(path: Path, command: str) -> str:
    """What a console block of `path` shows after `$ COMMAND`, up to the next `$`."""
    for block in fenced_blocks(path):
        if block.lang == "console" and f"$ {command}\n" in block.text:
            return block.text.split(f"$ {command}\n", 1)[1].split("\n$ ", 1)[0]
    raise AssertionError(f"{path.name} shows no `$ {command}`")


def test_the_test_notify_transcript_is_what_the_command_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runs that need no platform: a file receiver and a receiver that is not there."""
    notifiers = ROOT / "docs" / "notifiers.md"
    [config] = [b for b in fenced_blocks(notifiers) if b.lang == "yaml" and "archive" in b.text]
    (tmp_path / "config.yaml").write_text(config.text)
    monkeypatch.chdir(tmp_path)
    for receiver, code in (("archive", 0), ("nope", 2)):
        command = f"kube-event-watcher test-notify {receiver} -c config.yaml"
        assert main(command.split()[1:]) == code
        assert capsys.readouterr().out.rstrip("\n") == transcript(notifiers, command).rstrip("\n")
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1
