"""Render + cut time per alert for each platform's default message (not a test).

Run: .venv/bin/python bench/bench_templates.py [--alerts 500]
Builds each notifier's full request body (template render, escaping, cut to the platform's
limit, JSON encoding) for a typical alert and for a large one (a multi-byte note and a
~16 KB log tail that must be cut), and prints microseconds per alert (median of 5 rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from kube_event_watcher.notifiers.dingtalk import DingTalkConfig, DingTalkNotifier
from kube_event_watcher.notifiers.email import EmailConfig, EmailNotifier
from kube_event_watcher.notifiers.feishu import FeishuConfig, FeishuNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.slack import SlackConfig, SlackNotifier
from kube_event_watcher.notifiers.teams import TeamsConfig, TeamsNotifier
from kube_event_watcher.notifiers.telegram import TelegramConfig, TelegramNotifier
from kube_event_watcher.notifiers.wecom import WeComConfig, WeComNotifier
from kube_event_watcher.pipeline.model import Alert

URL = "https://example.invalid/hook?access_token=t&key=k"


def builders() -> dict[str, Callable[[Alert], Any]]:
    dingtalk = DingTalkNotifier(
        DingTalkConfig(name="d", type="dingtalk", url=URL, secret="SECxyz", keyword="k8s")
    )
    wecom = WeComNotifier(WeComConfig(name="w", type="wecom", url=URL))
    feishu = FeishuNotifier(FeishuConfig(name="f", type="feishu", url=URL, secret="s3cret"))
    slack = SlackNotifier(SlackConfig(name="s", type="slack", url=URL))
    teams = TeamsNotifier(TeamsConfig(name="t", type="teams", url=URL))
    telegram = TelegramNotifier(
        TelegramConfig(name="tg", type="telegram", token="123:abc", chat_id=1)
    )
    mail = EmailNotifier(
        EmailConfig(name="m", type="email", host="localhost", sender="a@b.c", to=["x@y.z"])
    )
    return {
        "dingtalk": lambda a: dingtalk.request(a),
        "wecom": wecom.message,
        "feishu": feishu.payload,
        "slack": slack.message,
        "teams": teams.payload,
        "telegram": lambda a: telegram.request(a),
        "email": lambda a: mail.message(a).as_bytes(),
    }


def measure(build: Callable[[Alert], Any], alert: Alert, count: int) -> float:
    build(alert)  # compile and cache the template first
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(count):
            build(alert)
        rounds.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=500)
    args = parser.parse_args()
    now = 1_800_000_000.0
    typical = sample_alert(now)
    large = sample_alert(
        now,
        note="容器启动失败 <b>*x*</b> & " * 100,
        facts={**typical.facts, "log_tail": '错误: connection refused "db" ✗\n' * 400},
    )
    print(f"{'platform':<10} {'typical µs':>11} {'large (cut) µs':>15}")
    for platform, build in builders().items():
        small = measure(build, typical, args.alerts)
        big = measure(build, large, max(50, args.alerts // 10))
        print(f"{platform:<10} {small:>11.1f} {big:>15.1f}")


if __name__ == "__main__":
    main()
