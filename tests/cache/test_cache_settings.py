"""Cache settings are documented and select the backend."""

from __future__ import annotations

from pathlib import Path

from nativekit import Service, Settings
from nativekit.cache import MemoryCache

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_cache_setting_is_documented() -> None:
    """Each cache_* Settings field appears in docs/configuration.md as its variable."""
    text = DOCS.read_text()
    fields = [name for name in Settings.model_fields if name.startswith("cache_")]
    assert fields
    missing = [f for f in fields if f"NATIVEKIT_{f.upper()}" not in text]
    assert missing == []


def test_memory_url_selects_the_memory_cache() -> None:
    """With NATIVEKIT_REDIS_URL=memory:// the service caches in process memory."""
    svc = Service("s", settings=Settings(cache_memory_max_entries=7))
    assert isinstance(svc.cache.backend, MemoryCache)
    assert svc.cache.backend.max_entries == 7
    assert svc.cache is svc.cache
    assert svc.cache.prefix == "nkc:s"
