"""Message templates: an alert in, a title, a header and a body out, escaped and cut to size.

Pure string work, no I/O beyond reading the shipped default templates once. Each platform
has a *dialect* (how a value is escaped, how a log tail becomes a code block, how a cut text
is repaired). Templates are rendered in a sandbox, and every `{{ value }}` is escaped for the
dialect automatically (the environment's `finalize`), so a note containing `<b>`, `*` or
`<@all>` stays text. Literal markup in the template itself is kept; `| raw` opts a value out.

A template may define the blocks `title`, `header` and `body`. The header (what, where, how
many, since when) is kept whole when a message must be cut to the platform's limit; the body
(note, facts, log tail) is cut, and a marker in the receiver's language says how much.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from kube_event_watcher.pipeline.cause import likely_cause
from kube_event_watcher.pipeline.model import Alert, ObjectMembers, members_by_object

Language = Literal["en", "zh-CN"]
LANGUAGES: tuple[Language, ...] = ("en", "zh-CN")
Unit = Literal["bytes", "chars"]
DialectName = Literal["markdown", "im-markdown", "slack", "telegram", "html", "plain"]

# Facts with a place of their own in the default templates (or none, for the digest's
# bookkeeping); the rest are listed as key: value.
# Facts the templates place themselves, or (namespace_labels) that are for routing only.
PLACED_FACTS = ("owner", "node", "log_tail", "digest_of", "digest_size", "namespace_labels")
REASONS_SHOWN = 3  # a group's headline names its most frequent reasons, then "+N more"
WORKLOADS_SHOWN = 3  # and, grouped not by owner, the workloads whose objects it counts
TITLE_MAX_CHARS = 150  # Slack's header block limit; long enough for every other platform

# --- escaping per dialect -------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]~#|])")
_ZWSP = "\u200b"


def escape_markdown(text: str) -> str:
    """Teams (Adaptive Card) markdown: backslash-escape the characters that format."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def escape_im_markdown(text: str) -> str:
    """DingTalk / WeCom / Feishu markdown: these renderers also honour HTML-like tags
    (`<font>`, `<@userid>`, `<at id=all>`), so `& < >` become entities, formatting characters
    are backslash-escaped, and a zero-width space after `@` keeps a note from mentioning."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("@", "@" + _ZWSP)


def escape_slack(text: str) -> str:
    """Slack mrkdwn: only `& < >` have to be escaped (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_telegram(text: str) -> str:
    """Telegram HTML parse mode: `& < >` as entities (https://core.telegram.org/bots/api#html-style)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_html(text: str) -> str:
    return html.escape(text, quote=True)


def escape_plain(text: str) -> str:
    return text


def _fence(text: str) -> str:
    # A ``` inside the log would close the block early; a zero-width space breaks the run.
    return "```\n" + text.replace("```", "`" + _ZWSP + "``").rstrip("\n") + "\n```"


def _code_slack(text: str) -> str:
    return _fence(escape_slack(text))


def _code_markdown(text: str) -> str:
    return _fence(text)


def _code_teams(text: str) -> str:
    # Adaptive Card TextBlocks have no code blocks; a paragraph per line keeps the lines apart.
    return "\n\n".join(escape_markdown(line) for line in text.rstrip("\n").split("\n"))


def _code_html(text: str) -> str:
    return "<pre>" + escape_html(text).rstrip("\n") + "</pre>"


def _code_telegram(text: str) -> str:
    return "<pre>" + escape_telegram(text).rstrip("\n") + "</pre>"


def _code_plain(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").split("\n"))


# Telegram rejects any tag outside this list with "can't parse entities".
TELEGRAM_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"code", "pre", "blockquote", "tg-emoji"}
)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")


def sanitize_telegram_html(text: str) -> str:
    """Tags Telegram does not know are turned into visible text instead of an API error."""

    def keep_or_escape(match: re.Match[str]) -> str:
        if match.group(2).lower() in TELEGRAM_TAGS:
            return match.group(0)
        return escape_telegram(match.group(0))

    return _TAG.sub(keep_or_escape, text)


def telegram_html_to_plain(text: str) -> str:
    """The text Telegram would show, for the plain-text re-send after a parse error."""
    return html.unescape(_TAG.sub("", text))


def _repair_markdown(text: str) -> str:
    # A cut inside a code block leaves it open and swallows the marker; close it.
    if text.count("```") % 2:
        text += "\n```"
    return text


_PARTIAL_TAG = re.compile(r"<[^<>]*$")
_PARTIAL_ENTITY = re.compile(r"&[#a-zA-Z0-9]*$")


def _repair_html(text: str) -> str:
    """Drop a tag or entity cut in half and close the tags left open, innermost first."""
    text = _PARTIAL_ENTITY.sub("", _PARTIAL_TAG.sub("", text))
    open_tags: list[str] = []
    for match in _TAG.finditer(text):
        name = match.group(2).lower()
        if match.group(1):
            if name in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name)]
        elif not match.group(3).rstrip().endswith("/") and name not in ("br", "hr"):
            open_tags.append(name)
    return text + "".join(f"</{name}>" for name in reversed(open_tags))


def _repair_slack(text: str) -> str:
    return _PARTIAL_ENTITY.sub("", _repair_markdown(text))


def _no_repair(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one family of platforms formats text."""

    name: DialectName
    escape: Callable[[str], str]
    code_block: Callable[[str], str]
    repair: Callable[[str], str]
    # Repairs may add a few characters (closing tags or fence); reserved when cutting.
    repair_reserve: int


DIALECTS: dict[DialectName, Dialect] = {
    "markdown": Dialect("markdown", escape_markdown, _code_teams, _repair_markdown, 4),
    "im-markdown": Dialect("im-markdown", escape_im_markdown, _code_markdown, _repair_markdown, 4),
    "slack": Dialect("slack", escape_slack, _code_slack, _repair_slack, 4),
    "telegram": Dialect("telegram", escape_telegram, _code_telegram, _repair_html, 64),
    "html": Dialect("html", escape_html, _code_html, _repair_html, 64),
    "plain": Dialect("plain", escape_plain, _code_plain, _no_repair, 0),
}

# --- the Jinja environment ------------------------------------------------------------------


def _raw(value: Any) -> Markup:
    """`{{ value | raw }}`: output as written, for a template author's own markup."""
    return Markup(str(value))


@cache
def environment(dialect: DialectName) -> SandboxedEnvironment:
    """One sandboxed environment per dialect; values are escaped on output (`finalize`)."""
    spec = DIALECTS[dialect]

    def finalize(value: Any) -> Any:
        if value is None or isinstance(value, jinja2.Undefined):
            return ""
        if isinstance(value, Markup):
            return str(value)
        return spec.escape(str(value))

    env = SandboxedEnvironment(
        # Missing optional facts render as nothing (and chain: facts.pod.node is fine).
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["raw"] = _raw
    env.filters["code_block"] = lambda text: Markup(spec.code_block(str(text)))
    env.filters["escape_for_platform"] = lambda text: Markup(spec.escape(str(text)))
    return env


class TemplateProblem(ValueError):
    """A template that does not compile; the message names the template and the line."""


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A compiled template: the dialect's version for header/body, a plain one for the title."""

    name: str
    dialect: DialectName
    formatted: jinja2.Template
    plain: jinja2.Template


def compile_template(source: str, dialect: DialectName, name: str) -> MessageTemplate:
    try:
        formatted = environment(dialect).from_string(source)
        plain = environment("plain").from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template {name}, line {exc.lineno}: {exc.message}") from exc
    return MessageTemplate(name=name, dialect=dialect, formatted=formatted, plain=plain)


def default_template_source(platform: str, language: Language) -> str:
    """The shipped template `kube_event_watcher/notifiers/templates/<platform>.<language>.j2`."""
    return _read_default(platform, language)


@cache
def _read_default(platform: str, language: str) -> str:
    path = resources.files("kube_event_watcher.notifiers").joinpath(
        f"templates/{platform}.{language}.j2"
    )
    return path.read_text(encoding="utf-8")


@cache
def default_template(platform: str, language: Language, dialect: DialectName) -> MessageTemplate:
    return compile_template(
        default_template_source(platform, language), dialect, f"{platform}.{language}.j2"
    )


# --- the context a template sees ------------------------------------------------------------


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_span(seconds: float) -> str:
    """`2h5m`, `4m10s`, `12s`: how long the alert has been going on."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return "".join(shown) or "0s"


def _describe_owner(owner: Any) -> str:
    if isinstance(owner, Mapping):
        kind, name = owner.get("kind", ""), owner.get("name", "")
        return f"{kind}/{name}" if kind else str(name)
    return "" if owner is None else str(owner)


# --- groups and digests: what, where, how many, since when ---------------------------------

_WORDS: dict[Language, dict[str, str]] = {
    "en": {
        "kind": "{n} {kind}",
        "of": "{what} of {owner}",
        "in": "{what} in {namespace}",
        "firing": "{what}: {reasons} since {start}",
        "resolved": "{what}: {reasons}, {start}–{end}",
        "digest": "{n} alerts combined",
        "members": "Members",
        "combined": "Alerts combined",
        "quiet": " (quiet)",
        "more": "… and {n} more",
        "more_reasons": "+{n} more",
        "more_workloads": "+{n} more",
        "sep": ", ",
    },
    "zh-CN": {
        "kind": "{n} 个 {kind}",
        "of": "{owner} 的 {what}",
        "in": "{namespace} 中的 {what}",
        "firing": "{what}：{reasons}，自 {start} 起",
        "resolved": "{what}：{reasons}，{start}–{end}",
        "digest": "合并 {n} 条告警",
        "members": "成员",
        "combined": "合并的告警",
        "quiet": "（已平息）",
        "more": "…… 另有 {n} 个",
        "more_reasons": "另有 {n} 种",
        "more_workloads": "等 {n} 个",
        "sep": "、",
    },
}


# The likely cause (pipeline/cause.py), phrased per language; {container} is pre-formatted.
_CAUSES: dict[Language, dict[str, str]] = {
    "en": {
        "container": "container {name}",
        "a_container": "the container",
        "oom": "out of memory: {container} was OOMKilled (exit code {exit_code}); raise its "
        "memory limit or find what grows",
        "killed": "{container} was killed (SIGKILL, exit code 137): a failing liveness probe, "
        "or memory pressure on its Node",
        "image": "the image {image} cannot be pulled: {error}",
        "config": "{container} cannot be created: {error}",
        "crash": "{container} exits with code {exit_code}{terminated} and is restarted "
        "({restarts} restarts); the log tail shows why",
        "unschedulable": "no Node fits the Pod: {why}",
        "evicted": "evicted by the kubelet: {why}",
        "node": "its Node {node} is Ready={ready}{why}",
    },
    "zh-CN": {
        "container": "容器 {name}",
        "a_container": "容器",
        "oom": "内存不足：{container} 被 OOMKilled（退出码 {exit_code}）；"
        "调高内存上限或排查内存增长",
        "killed": "{container} 被强制终止（SIGKILL，退出码 137）：存活探针失败，或节点内存压力",
        "image": "镜像 {image} 无法拉取：{error}",
        "config": "{container} 无法创建：{error}",
        "crash": "{container} 以退出码 {exit_code}{terminated} 退出并被重启（已重启 {restarts} "
        "次）；原因见日志末尾",
        "unschedulable": "没有可调度的节点：{why}",
        "evicted": "被 kubelet 驱逐：{why}",
        "node": "所在节点 {node} Ready={ready}{why}",
    },
}


def likely_cause_phrase(alert: Alert, language: Language) -> str:
    """The likely cause in the receiver's language, or "" when the facts say nothing more."""
    cause = likely_cause(alert.reason, alert.note, alert.facts)
    if cause is None:
        return ""
    words = _CAUSES[language]
    details = dict(cause.details)
    name = details.get("container", "")
    details["container"] = words["container"].format(name=name) if name else words["a_container"]
    terminated = details.get("terminated", "")
    details["terminated"] = f" ({terminated})" if terminated and terminated != "Error" else ""
    why = details.get("why", "")
    if cause.code == "node":
        details["why"] = f" ({why})" if why else ""
    return words[cause.code].format(**details)


def _plural(kind: str, n: int) -> str:
    if n == 1 or not kind:
        return kind
    if kind.endswith(("s", "x", "ch", "sh")):
        return kind + "es"
    if kind.endswith("y") and kind[-2:-1] not in ("a", "e", "o", "u"):
        return kind[:-1] + "ies"  # NetworkPolicy -> NetworkPolicies
    return kind + "s"


def _clock_time(epoch: float, reference: float) -> str:
    """`10:02 UTC`, with the date when it is not the day of `reference`."""
    when = datetime.fromtimestamp(epoch, UTC)
    same_day = when.date() == datetime.fromtimestamp(reference, UTC).date()
    return when.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def _reasons_phrase(counts: Mapping[str, int], words: Mapping[str, str]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = [f"{reason} ×{n}" for reason, n in ordered[:REASONS_SHOWN]]
    if len(ordered) > REASONS_SHOWN:
        shown.append(words["more_reasons"].format(n=len(ordered) - REASONS_SHOWN))
    return words["sep"].join(shown)


def _group_what(alert: Alert, owner: str, language: Language) -> str:
    """`20 Pods of Deployment/web`: how many objects of which kinds, and where."""
    words = _WORDS[language]
    objects = dict(alert.objects) or {alert.regarding.kind or "object": alert.member_count}
    what = words["sep"].join(
        # Chinese nouns have no plural: 20 个 Pod.
        words["kind"].format(n=n, kind=_plural(kind, n) if language == "en" else kind)
        for kind, n in sorted(objects.items(), key=lambda item: (-item[1], item[0]))
    )
    owner = owner or alert.labels.get("owner", "")
    if owner:
        return words["of"].format(what=what, owner=owner)
    if alert.workloads:  # grouped by something else: still say whose objects they are
        shown = words["sep"].join(alert.workloads[:WORKLOADS_SHOWN])
        if len(alert.workloads) > WORKLOADS_SHOWN:
            more = words["more_workloads"].format(n=len(alert.workloads) - WORKLOADS_SHOWN)
            shown += words["sep"] + more
        what = words["of"].format(what=what, owner=shown)
    namespace = alert.namespace or alert.regarding.namespace
    return words["in"].format(what=what, namespace=namespace) if namespace else what


def _member_line(member: ObjectMembers, words: Mapping[str, str]) -> str:
    ref = member.regarding
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    quiet = "" if member.firing else words["quiet"]
    reasons = ", ".join(f"{reason} ×{count}" for reason, count in member.reasons)
    return f"{ref.kind} {where}: {reasons}{quiet}"


def _summary(alert: Alert, owner: str, language: Language) -> dict[str, Any]:
    """The context entries that differ for a group or a digest: `subject` (the title's
    what), `object`, `headline`, and `lines` under `lines_title` (members or alerts)."""
    words = _WORDS[language]
    regarding = alert.regarding
    digest = alert.labels.get("digest") == "true"
    group = bool(alert.group_key) and not digest
    if not (group or digest):
        where = f"{regarding.namespace}/{regarding.name}" if regarding.namespace else regarding.name
        return {
            "group": False,
            "digest": False,
            "subject": f"{alert.reason} · {regarding.kind} {regarding.name}",
            "object": f"{regarding.kind} {where}",
            "headline": "",
            "lines": [],
            "lines_title": "",
        }
    if digest:
        size = alert.facts.get("digest_size") or len(alert.note.splitlines())
        what = words["digest"].format(n=size)
        counts: dict[str, int] = {}
        for occurrence in alert.occurrences:
            counts[occurrence.reason] = counts.get(occurrence.reason, 0) + occurrence.count
        if len(counts) <= 1:  # one reason: the alerts' own counts, not the events'
            counts = {alert.reason: alert.count}
        reasons = _reasons_phrase(counts, words)
        lines = [line for line in alert.note.splitlines() if line.strip()]
        lines_title = words["combined"]
    else:
        what = _group_what(alert, owner, language)
        reasons = _reasons_phrase(alert.reasons or {alert.reason: alert.count}, words)
        listed = members_by_object(alert.members)
        lines = [_member_line(member, words) for member in listed]
        objects = sum(alert.objects.values())
        hidden = objects - len(listed) if objects else alert.member_count - len(alert.members)
        if hidden > 0:
            lines.append(words["more"].format(n=hidden))
        lines_title = words["members"]
    start = _clock_time(alert.first_seen, alert.last_seen)
    if alert.status == "resolved":
        start = start.removesuffix(" UTC")  # 07:02–08:00 UTC
    headline = words[alert.status].format(
        what=what,
        reasons=reasons,
        start=start,
        end=_clock_time(alert.last_seen, alert.last_seen),
    )
    return {
        "group": group,
        "digest": digest,
        "subject": headline,
        "object": what,
        "headline": headline,
        "lines": lines,
        "lines_title": lines_title,
    }


def alert_context(alert: Alert, language: Language, **extra: Any) -> dict[str, Any]:
    """Everything a template may use; see docs/notifiers.md for the list."""
    facts = dict(alert.facts)
    regarding = alert.regarding
    context: dict[str, Any] = {
        "alert": alert,
        "language": language,
        "status": alert.status,
        "firing": alert.status == "firing",
        "resolved": alert.status == "resolved",
        "cluster": alert.cluster,
        "namespace": alert.namespace or regarding.namespace,
        "kind": regarding.kind,
        "name": regarding.name,
        "field_path": regarding.field_path,
        "reason": alert.reason,
        "type": alert.type,
        "warning": alert.type == "Warning",
        "note": " ".join(alert.note.split()) if "\n" not in alert.note else alert.note.strip(),
        "count": alert.count,
        "occurrences": len(alert.occurrences),
        "first_seen": format_time(alert.first_seen),
        "last_seen": format_time(alert.last_seen),
        "span": format_span(alert.last_seen - alert.first_seen),
        "node": "" if facts.get("node") is None else str(facts.get("node")),
        "log_tail": "" if facts.get("log_tail") is None else str(facts["log_tail"]),
        "facts": {k: v for k, v in facts.items() if k not in PLACED_FACTS and v is not None},
        "labels": dict(alert.labels),
    }
    owner = _describe_owner(facts.get("owner"))
    context["owner"] = owner
    context["likely_cause"] = likely_cause_phrase(alert, language)
    context.update(_summary(alert, owner, language))
    if context["digest"]:
        context["note"] = ""  # its lines are listed one per alert
    context.update(extra)
    return context


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A rendered alert: `title` is plain text; `header` and `body` are in the dialect."""

    title: str
    header: str
    body: str

    @property
    def text(self) -> str:
        return join_parts(self.header, self.body)


def join_parts(header: str, body: str) -> str:
    if header and body:
        return header + "\n\n" + body
    return header or body


def _render_block(template: jinja2.Template, block: str, context: dict[str, Any]) -> str:
    render = template.blocks[block]
    return "".join(render(template.new_context(context))).strip("\n")


def _fallback_title(context: Mapping[str, Any]) -> str:
    return f"{context['reason']} {context['object']}"


def render_message(template: MessageTemplate, context: dict[str, Any]) -> RenderedMessage:
    """Render the blocks; a template without `header`/`body` blocks is all body."""
    blocks = template.formatted.blocks
    if "title" in blocks:
        title = _render_block(template.plain, "title", context)
    else:
        title = _fallback_title(context)
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1] + "…"
    if "header" in blocks or "body" in blocks:
        header = _render_block(template.formatted, "header", context) if "header" in blocks else ""
        body = _render_block(template.formatted, "body", context) if "body" in blocks else ""
    else:
        header, body = "", template.formatted.render(context).strip("\n")
    return RenderedMessage(title=title, header=header, body=body)


# --- cutting to size ------------------------------------------------------------------------

_MARKERS: dict[Language, dict[Unit, str]] = {
    "en": {"bytes": "… (truncated, {n} bytes cut)", "chars": "… (truncated, {n} characters cut)"},
    "zh-CN": {"bytes": "…（已截断，省略 {n} 字节）", "chars": "…（已截断，省略 {n} 个字符）"},
}


def truncation_marker(language: Language, unit: Unit, cut: int) -> str:
    return _MARKERS[language][unit].format(n=cut)


def measure(text: str, unit: Unit) -> int:
    return len(text.encode("utf-8")) if unit == "bytes" else len(text)


def cut_to(text: str, size: int, unit: Unit) -> str:
    """The longest prefix of `text` that measures at most `size`; never splits a character."""
    if size <= 0:
        return ""
    if unit == "chars":
        return text[:size]
    # Dropping the incomplete tail of a cut multi-byte character keeps the text valid UTF-8.
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def truncate_message(
    header: str,
    body: str,
    limit: int,
    unit: Unit,
    language: Language,
    dialect: DialectName = "plain",
) -> str:
    """`header` and `body` joined, at most `limit` long (in `unit`).

    When it has to be cut, the header stays whole and the body is cut, followed by a marker
    saying how much was cut. Only when even the header and the marker do not fit is the header
    itself cut (a degenerate limit; the result still never exceeds it).
    """
    full = join_parts(header, body)
    if measure(full, unit) <= limit:
        return full
    spec = DIALECTS[dialect]
    # The marker is sized for the largest possible count, so the real one always fits.
    widest_marker = "\n\n" + truncation_marker(language, unit, measure(full, unit))
    prefix = header + "\n\n" if header else ""
    budget = limit - measure(prefix, unit) - measure(widest_marker, unit) - spec.repair_reserve
    if budget < 0:
        return spec.repair(cut_to(full, limit - spec.repair_reserve, unit)) if limit > 0 else ""
    kept = spec.repair(cut_to(body, budget, unit).rstrip())
    cut = measure(body, unit) - measure(kept, unit)
    result = prefix + kept + "\n\n" + truncation_marker(language, unit, max(cut, 1))
    if measure(result, unit) > limit:  # repair added more than reserved: cut harder
        return cut_to(result, limit, unit)
    return result


def fit_payload(
    message: RenderedMessage,
    limit_bytes: int,
    language: Language,
    dialect: DialectName,
    encode: Callable[[str], bytes],
) -> bytes:
    """The encoded payload (e.g. JSON around the text) cut so that it is at most `limit_bytes`.

    `encode(text)` builds the whole request body for a message text. JSON escaping makes the
    payload grow unevenly with the text, so the text budget is tightened until it fits.
    """
    text = message.text
    payload = encode(text)
    if len(payload) <= limit_bytes:
        return payload
    overhead = len(encode(""))

    def attempt(budget: int) -> bytes:
        text = truncate_message(message.header, message.body, budget, "bytes", language, dialect)
        return encode(text)

    # Usually the first guess fits; when escaping grows the text (quotes, control characters),
    # search for the largest text budget whose payload fits.
    best = attempt(limit_bytes - overhead)
    if len(best) <= limit_bytes:
        return best
    low, high = 0, limit_bytes - overhead - 1
    best = encode("")
    while low <= high:
        middle = (low + high) // 2
        candidate = attempt(middle)
        if len(candidate) <= limit_bytes:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best
