"""The shard plan (pure): one shard per watch scope, even shares, each shard's own config."""

from __future__ import annotations

from kube_event_watcher.config.loading import LoadedConfig
from kube_event_watcher.config.schema import Config
from kube_event_watcher.ops.reload import with_live_sections
from kube_event_watcher.shards import fair_share, plan_shards, shard_config


def config(**overrides: object) -> Config:
    return Config.model_validate(
        {
            "ha": {"enabled": True, "shards": True, "lease": "kew"},
            "state": {"backend": "configmap", "configmap": "kew-state"},
            **overrides,
        }
    )


def test_each_namespace_of_each_cluster_is_a_shard_with_a_stable_readable_name() -> None:
    cfg = config(
        clusters=[{"name": "prod"}, {"name": "stage"}],
        sources=[{"namespaces": ["shop", "payments"]}],
    )
    shards = plan_shards(cfg)
    assert len(shards) == 4
    assert [s.name.rsplit("-", 1)[0] for s in shards] == ["shop", "payments", "shop", "payments"]
    assert len({s.name for s in shards}) == 4  # same namespace, other cluster: another shard
    assert [s.name for s in plan_shards(cfg)] == [s.name for s in shards]


def test_shares_are_even_and_rounded_up() -> None:
    assert [fair_share(3, n) for n in (0, 1, 2, 3, 4)] == [0, 3, 2, 1, 1]


def test_a_shards_config_has_its_own_scope_lease_and_configmap_and_no_port() -> None:
    cfg = config(sources=[{"namespaces": ["shop", "payments"]}], ops={"listen": ":9464"})
    shop = plan_shards(cfg)[0]
    sliced = shard_config(LoadedConfig(cfg, "test"), shop).config
    assert [s.namespaces for s in sliced.sources] == [["shop"]]
    assert sliced.ha.lease == f"kew-{shop.name}"
    assert sliced.state.configmap == f"kew-state-{shop.name}"
    assert (sliced.ha.enabled, sliced.ha.shards, sliced.ops.listen) == (True, False, "")


def test_after_a_reload_a_shard_runs_the_new_live_sections_and_the_start_up_plan() -> None:
    started = LoadedConfig(
        config(
            sources=[{"namespaces": ["shop", "payments"]}],
            receivers=[{"name": "first", "type": "stdout"}],
        ),
        "start",
    )
    reloaded = config(
        sources=[{"namespaces": ["shop", "payments", "search"]}],
        receivers=[{"name": "first", "type": "stdout"}, {"name": "second", "type": "stdout"}],
        routes={"receiver": "second"},
        filters={"drop": [{"reason": "Pulled"}]},
        state={"backend": "configmap", "configmap": "other-state"},
    )
    current = with_live_sections(started, LoadedConfig(reloaded, "reload"))
    shop = plan_shards(started.config)[0]
    sliced = shard_config(current, shop).config
    assert sliced.routes.receiver == "second"
    assert [r.name for r in sliced.receivers] == ["first", "second"]
    assert sliced.filters == reloaded.filters
    # The plan and where its state lives stay as at start-up until a restart.
    assert [s.namespaces for s in current.config.sources] == [["shop", "payments"]]
    assert sliced.state.configmap == f"kew-state-{shop.name}"
