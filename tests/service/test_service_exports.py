"""The public surface of the service package, pinned."""

from __future__ import annotations

import reward_service
import reward_service.app
import reward_service.settings
import reward_service.store
import reward_service.store.base


def test_exported_names() -> None:
    assert reward_service.__all__ == []
    assert reward_service.app.__all__ == ["create_app"]
    assert reward_service.settings.__all__ == [
        "MIN_TOKEN_LENGTH",
        "PLACEHOLDER_TOKENS",
        "Settings",
        "get_settings",
    ]
    assert reward_service.store.__all__ == [
        "MemoryStore",
        "Store",
        "StoreConflict",
        "StoreError",
        "StoreUnavailable",
        "open_store",
    ]


def test_the_store_interface() -> None:
    abstract = reward_service.store.base.Store.__abstractmethods__
    assert abstract == {
        "ping",
        "close",
        "list_names",
        "read_meta",
        "put_target",
        "read_target",
        "stage_pool",
        "publish_pool",
        "append_commit",
        "seen_commit",
        "read_base",
        "read_log",
        "write_snapshot",
        "round_version",
        "claim_build",
        "release_build",
        "share_build",
        "shared_build_version",
        "read_shared_build",
        "delete",
    }
