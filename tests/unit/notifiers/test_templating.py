"""Templates: both languages render, values are escaped per platform, cuts keep the header."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kube_event_watcher.notifiers.digest import digest_alert
from kube_event_watcher.notifiers.message import MessageConfig, MessageRenderer
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.templating import (
    LANGUAGES,
    TELEGRAM_TAGS,
    DialectName,
    Language,
    RenderedMessage,
    Unit,
    alert_context,
    default_template,
    fit_payload,
    render_message,
    sanitize_telegram_html,
    telegram_html_to_plain,
    truncate_message,
)
from kube_event_watcher.pipeline.model import AlertMember, ObjectRef

NOW = 1_800_000_000.0
PLATFORMS: list[tuple[str, DialectName]] = [
    ("dingtalk", "im-markdown"),
    ("wecom", "im-markdown"),
    ("feishu", "im-markdown"),
    ("slack", "slack"),
    ("teams", "markdown"),
    ("telegram", "telegram"),
    ("email-text", "plain"),
    ("email-html", "html"),
]
EXTRAS: dict[str, Any] = {"color": "warning", "markdown_v2": False, "mentions": ""}


def render(
    platform: str, dialect: DialectName, language: Language, **alert: Any
) -> RenderedMessage:
    template = default_template(platform, language, dialect)
    return render_message(template, alert_context(sample_alert(NOW, **alert), language, **EXTRAS))


@pytest.mark.parametrize(("platform", "dialect"), PLATFORMS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_default_template_says_what_where_how_many(
    platform: str, dialect: DialectName, language: Language
) -> None:
    message = render(platform, dialect, language)
    assert "BackOff" in message.title
    for fact in ("sample-cluster", "payments", "payments-api-7c9d8b6f5-x2x4q", "node-a-3"):
        assert fact in message.header, fact
    assert "Deployment/payments-api" in message.header
    assert "7" in message.header  # how many
    assert "2027-01-15 07:53:00 UTC" in message.header  # since when (first seen)
    assert "Back-off restarting" in message.body
    assert "FATAL cannot start" in message.body  # the log tail
    assert ("集群" in message.header) == (language == "zh-CN")
    resolved = render(platform, dialect, language, status="resolved")
    assert ("已恢复" if language == "zh-CN" else "Resolved") in resolved.title


def test_missing_optional_facts_render_without_gaps() -> None:
    message = render("dingtalk", "im-markdown", "en", facts={})
    assert "Owner" not in message.header
    assert "Node" not in message.header
    assert "Log tail" not in message.body


INJECTION = "<b>bold</b> *star* _under_ @all <@all> <at id=all></at> <!channel> &amp;"


@pytest.mark.parametrize(("platform", "dialect"), PLATFORMS)
def test_a_note_cannot_inject_markup_or_mentions(platform: str, dialect: DialectName) -> None:
    body = render(platform, dialect, "en", note=INJECTION).body.split("\n")[0]
    if dialect in ("im-markdown", "slack", "telegram", "html"):
        for raw in ("<b>", "<@all>", "<at id=all>", "<!channel>"):
            assert raw not in body, raw
        assert "&lt;b&gt;" in body
    if dialect in ("im-markdown", "markdown"):
        assert r"\*star\*" in body
        assert r"\_under\_" in body
    if dialect == "im-markdown":
        assert "@all" not in body  # a zero-width space keeps it from mentioning
        assert "@\u200ball" in body
    if dialect == "plain":
        assert INJECTION in body


def test_telegram_keeps_its_own_tags_and_escapes_others() -> None:
    text = "<b>ok</b> <i>x</i> <script>alert(1)</script> <pre>code</pre>"
    cleaned = sanitize_telegram_html(text)
    assert "<b>ok</b>" in cleaned
    assert "<pre>code</pre>" in cleaned
    assert "<script>" not in cleaned
    assert "&lt;script&gt;" in cleaned
    assert telegram_html_to_plain(cleaned) == "ok x <script>alert(1)</script> code"


# --- overrides -----------------------------------------------------------------------------


def test_inline_template_override_with_blocks() -> None:
    config = MessageConfig(
        name="r",
        type="dingtalk",
        template="{% block title %}T {{ reason }}{% endblock %}"
        "{% block header %}H {{ object }}{% endblock %}{% block body %}B {{ note }}{% endblock %}",
    )
    renderer = MessageRenderer.for_config(config, "dingtalk", "im-markdown", "zh-CN")
    message = renderer.render(sample_alert(NOW, note="a*b"))
    assert message.title == "T BackOff"
    assert message.header == "H Pod payments/payments-api-7c9d8b6f5-x2x4q"
    assert message.body == r"B a\*b"


def test_template_file_and_language_choice(tmp_path: Path) -> None:
    path = tmp_path / "mine.j2"
    path.write_text("{{ reason }} in {{ cluster }} ({{ language }})", encoding="utf-8")
    config = MessageConfig(name="r", type="slack", template_file=str(path), language="zh-CN")
    renderer = MessageRenderer.for_config(config, "slack", "slack", "en")
    message = renderer.render(sample_alert(NOW))
    assert message.body == "BackOff in sample-cluster (zh-CN)"
    assert message.header == ""


def test_template_syntax_error_is_a_config_error_naming_the_line() -> None:
    with pytest.raises(ValidationError, match=r"template: template template, line 2"):
        MessageConfig(name="r", type="slack", template="ok\n{% if %}")


def test_template_file_missing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        MessageConfig(name="r", type="slack", template_file=str(tmp_path / "nope.j2"))


def test_broken_override_at_render_time_falls_back_to_the_default() -> None:
    config = MessageConfig(name="r", type="slack", template="{{ 1 // 0 }}")
    renderer = MessageRenderer.for_config(config, "slack", "slack", "en")
    message = renderer.render(sample_alert(NOW))
    assert "*Cluster:* sample-cluster" in message.header


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    config = MessageConfig(
        name="r", type="slack", template="{{ alert.__class__.__mro__[1].__subclasses__() }}"
    )
    renderer = MessageRenderer.for_config(config, "slack", "slack", "en")
    message = renderer.render(sample_alert(NOW))
    assert "subclasses" not in message.text
    assert "sample-cluster" in message.header  # the default took over


# --- truncation ----------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)
rich_texts = st.one_of(
    texts,
    st.lists(st.sampled_from(["a", "é", "中文", "🔥", "<b>", "</b>", "&amp;", "```", "\n"])).map(
        "".join
    ),
)


def marker_room(language: Language, unit: Unit, total: int) -> int:
    marker = "\n\n" + (
        "…（已截断，省略 字节）" if language == "zh-CN" else "… (truncated,  bytes cut)"
    )
    size = len(marker.encode()) if unit == "bytes" else len(marker)
    return size + len(str(total)) + 64 + 2


@settings(max_examples=300, deadline=None)
@given(
    header=rich_texts,
    body=rich_texts,
    extra=st.integers(min_value=0, max_value=600),
    unit=st.sampled_from(["bytes", "chars"]),
    language=st.sampled_from(LANGUAGES),
    dialect=st.sampled_from(["im-markdown", "slack", "telegram", "plain", "html", "markdown"]),
)
def test_truncation_fits_keeps_the_header_and_says_so(
    header: str, body: str, extra: int, unit: Unit, language: Language, dialect: DialectName
) -> None:
    def size(text: str) -> int:
        return len(text.encode()) if unit == "bytes" else len(text)

    full = header + "\n\n" + body if header and body else header or body
    limit = size(header) + marker_room(language, unit, size(full)) + extra
    result = truncate_message(header, body, limit, unit, language, dialect)
    assert size(result) <= limit
    result.encode("utf-8")  # valid UTF-8: no half characters, no surrogates
    assert result.startswith(header)
    if result != full:
        assert ("已截断" if language == "zh-CN" else "truncated") in result


@settings(max_examples=200, deadline=None)
@given(
    header=rich_texts,
    body=rich_texts,
    limit=st.integers(min_value=0, max_value=300),
    unit=st.sampled_from(["bytes", "chars"]),
)
def test_truncation_never_exceeds_even_a_tiny_limit(
    header: str, body: str, limit: int, unit: Unit
) -> None:
    result = truncate_message(header, body, limit, unit, "en", "telegram")
    measured = len(result.encode()) if unit == "bytes" else len(result)
    assert measured <= limit


def test_cut_by_bytes_counts_utf8_bytes_and_reports_them() -> None:
    header = "头" * 10  # 30 bytes
    body = "中" * 1000  # 3000 bytes
    result = truncate_message(header, body, 300, "bytes", "zh-CN", "im-markdown")
    assert len(result.encode()) <= 300
    assert result.startswith(header + "\n\n中")
    cut = int(re.search(r"省略 (\d+) 字节", result).group(1))  # type: ignore[union-attr]
    kept = result[len(header) + 2 :].split("\n\n")[0]
    assert cut == len(body.encode()) - len(kept.encode())


def test_cut_inside_a_code_block_closes_it() -> None:
    body = "note\n\n```\n" + "log line\n" * 200 + "```"
    result = truncate_message("H", body, 400, "bytes", "en", "im-markdown")
    assert result.count("```") % 2 == 0
    assert result.endswith("bytes cut)")


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"tag {tag}")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced {tag}")


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(min_value=420, max_value=1500))
def test_telegram_cut_leaves_parseable_html(limit: int) -> None:
    message = render("telegram", "telegram", "en", note="x &amp; y " * 80)
    result = truncate_message(message.header, message.body, limit, "chars", "en", "telegram")
    checker = _TagChecker()
    checker.feed(result)
    checker.close()
    assert len(result) <= limit
    assert not checker.errors
    assert not checker.stack
    assert result.startswith(message.header)


@settings(max_examples=100, deadline=None)
@given(body=rich_texts.map(lambda s: s * 40), limit=st.integers(min_value=1500, max_value=6000))
def test_payload_fits_even_when_json_escaping_grows_the_text(body: str, limit: int) -> None:
    message = RenderedMessage(title="t", header='H "quoted" \\ header', body=body + '"\x01' * 300)

    def encode(text: str) -> bytes:
        return orjson.dumps({"msg_type": "interactive", "card": {"elements": [text]}})

    payload = fit_payload(message, limit, "en", "im-markdown", encode)
    assert len(payload) <= limit
    text = orjson.loads(payload)["card"]["elements"][0]
    assert text.startswith(message.header)


# --- groups (from the aggregator) and digests (from a receiver that fell behind) ---------


def group_overrides(status: str = "firing") -> dict[str, Any]:
    """A crash-looping rollout as the aggregator reports it: 20 Pods, 57 BackOffs."""
    members = tuple(
        AlertMember(
            key=f"k{i}",
            regarding=ObjectRef("Pod", "payments", f"payments-api-7c9d8b6f5-pod{i:02}", f"u{i}"),
            reason="BackOff",
            count=3,
            first_seen=NOW - 3480,
            last_seen=NOW - i,
            firing=i != 1,
        )
        for i in range(2)
    )
    return {
        "status": status,
        "group_key": "sample-cluster/payments/payments-api/BackOff",
        "labels": {"namespace": "payments", "owner": "payments-api", "reason": "BackOff"},
        "regarding": ObjectRef("Pod", "payments", "payments-api", ""),
        "members": members,
        "member_count": 20,
        "objects": {"Pod": 20},
        "reasons": {"BackOff": 57},
        "count": 57,
        "sequence": 3 if status == "resolved" else 1,
        "first_seen": NOW - 3480,  # 07:02 UTC
        "last_seen": NOW,  # 08:00 UTC
    }


GROUP_HEADLINES: dict[Language, dict[str, str]] = {
    "en": {
        "firing": "20 Pods of Deployment/payments-api: BackOff ×57 since 07:02 UTC",
        "resolved": "20 Pods of Deployment/payments-api: BackOff ×57, 07:02–08:00 UTC",
    },
    "zh-CN": {
        "firing": "Deployment/payments-api 的 20 个 Pod：BackOff ×57，自 07:02 UTC 起",
        "resolved": "Deployment/payments-api 的 20 个 Pod：BackOff ×57，07:02–08:00 UTC",
    },
}


@pytest.mark.parametrize(("platform", "dialect"), PLATFORMS)
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("status", ["firing", "resolved"])
def test_a_group_says_what_where_how_many_and_since_when(
    platform: str, dialect: DialectName, language: Language, status: str
) -> None:
    message = render(platform, dialect, language, **group_overrides(status))
    headline = GROUP_HEADLINES[language][status]
    assert headline in message.title
    what = headline.split(":")[0].split("：")[0]
    assert what in message.header  # the Object line names the group, not one Pod
    assert "sample-cluster" in message.header
    assert "57" in message.header
    resolved_word = "已恢复" if language == "zh-CN" else "Resolved"
    assert (resolved_word in message.title) == (status == "resolved")
    # One line per listed member, the quiet one marked, and how many are not listed.
    assert "payments-api-7c9d8b6f5-pod00: BackOff ×3" in message.body
    quiet = "（已平息）" if language == "zh-CN" else " (quiet)"
    assert f"payments-api-7c9d8b6f5-pod01: BackOff ×3{quiet}" in message.body
    assert ("另有 18 个" if language == "zh-CN" else "and 18 more") in message.body


def test_a_pod_with_several_reasons_is_one_member_line() -> None:
    overrides = group_overrides()
    pod00 = overrides["members"][0]
    overrides["members"] = (
        pod00,
        pod00._replace(key="k0u", reason="Unhealthy", count=2),
        *overrides["members"][1:],
    )
    overrides["member_count"] = 21  # keys; the Pods are still 20
    message = render("slack", "slack", "en", **overrides)
    assert "payments-api-7c9d8b6f5-pod00: BackOff ×3, Unhealthy ×2\n" in message.body + "\n"
    assert message.body.count("pod00") == 1
    assert "and 18 more" in message.body  # 20 Pods, 2 listed


@pytest.mark.parametrize(
    ("language", "headline"),
    [
        ("en", "20 Pods of api, web, worker, +1 more in payments: BackOff ×57 since 07:02 UTC"),
        (
            "zh-CN",
            "payments 中的 api、web、worker、等 1 个 的 20 个 Pod：BackOff ×57，自 07:02 UTC 起",
        ),
    ],
)
def test_a_group_not_by_owner_still_names_the_workloads(language: Language, headline: str) -> None:
    overrides = group_overrides() | {"facts": {}, "labels": {"namespace": "payments"}}
    overrides["workloads"] = ("api", "web", "worker", "zeta")
    message = render("slack", "slack", language, **overrides)
    assert message.title.endswith(headline)


def test_a_group_without_an_owner_says_where_it_is() -> None:
    overrides = group_overrides() | {"facts": {}, "labels": {"namespace": "payments"}}
    overrides["objects"] = {"Pod": 20, "Node": 1}
    message = render("slack", "slack", "en", **overrides)
    assert message.title.endswith("20 Pods, 1 Node in payments: BackOff ×57 since 07:02 UTC")


@pytest.mark.parametrize(("platform", "dialect"), PLATFORMS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_a_digest_lists_one_line_per_alert(
    platform: str, dialect: DialectName, language: Language
) -> None:
    alerts = [
        sample_alert(NOW - 60 * i, notification_id=f"n{i}", note=f"restart number {i}")
        for i in range(3)
    ]
    digest = digest_alert("oncall", alerts)
    template = default_template(platform, language, dialect)
    message = render_message(template, alert_context(digest, language, **EXTRAS))
    combined = "合并 3 条告警" if language == "zh-CN" else "3 alerts combined"
    separator = "：" if language == "zh-CN" else ": "
    assert f"{combined}{separator}BackOff ×21" in message.title  # 3 alerts of 7 each
    assert combined in message.header
    for i in range(3):
        assert f"restart number {i}" in message.body
    assert message.body.count("restart number") == 3  # once each, not also as one note
    assert "digest_of" not in message.body  # bookkeeping, not a fact for people


@pytest.mark.parametrize(("platform", "dialect"), PLATFORMS)
@pytest.mark.parametrize(
    ("language", "phrase"),
    [
        ("en", "out of memory: container app was OOMKilled (exit code 137)"),
        ("zh-CN", "内存不足：容器 app 被 OOMKilled（退出码 137）"),
    ],
)
def test_every_default_template_names_the_likely_cause(
    platform: str, dialect: DialectName, language: Language, phrase: str
) -> None:
    facts = {"container": "app", "last_terminated_reason": "OOMKilled", "exit_code": 137}
    message = render(platform, dialect, language, facts=facts)
    assert phrase in message.header
    plain = render(platform, dialect, language, facts={})
    assert ("Likely cause" in plain.header or "可能原因" in plain.header) is False
