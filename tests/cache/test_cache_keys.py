"""Key templates and signatures are checked when the function is decorated."""

from __future__ import annotations

from typing import Any

import pytest

from nativekit.cache import Cache
from nativekit.cache._keys import escape
from nativekit.errors import ConfigError


class Opaque:
    """Not serializable."""


class User:
    """Has an id."""

    id = 7


@pytest.fixture
def cache() -> Cache:
    """A memory cache."""
    return Cache()


def test_unknown_template_field_names_the_field(cache: Cache) -> None:
    """A template field that is not a parameter fails at decoration, naming it."""
    with pytest.raises(ConfigError, match=r"\{skew\}.*parameters: sku"):

        @cache.cached(ttl=1, key="product:{skew}")
        async def get(sku: str) -> int:
            return 1


def test_unknown_tag_field_fails_at_decoration(cache: Cache) -> None:
    """Tag templates are checked like key templates."""
    with pytest.raises(ConfigError, match=r"tag.*\{user\}"):

        @cache.cached(ttl=1, tags=["by-user:{user}"])
        async def get(sku: str) -> int:
            return 1


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("p:{}", "use parameter names"),
        ("p:{0}", "use parameter names"),
        ("p:{sku[0]}", "use parameter names"),
        ("p:{sku!r}", "conversion or format spec"),
        ("p:{sku:>5}", "conversion or format spec"),
        ("p:{sku", "malformed"),
    ],
)
def test_malformed_templates_are_rejected(cache: Cache, template: str, message: str) -> None:
    """Positional fields, indexing, conversions, specs and broken braces are errors."""
    with pytest.raises(ConfigError, match=message):

        @cache.cached(ttl=1, key=template)
        async def get(sku: str) -> int:
            return 1


def test_attribute_fields_and_literal_braces(cache: Cache) -> None:
    """'{user.id}' reads an attribute; '{{' renders a literal brace."""

    @cache.cached(ttl=1, key="u:{user.id}:{{x}}")
    async def get(user: User) -> int:
        return 1

    assert get.key_for({"user": User()}).startswith(f"{cache.prefix}:u:7:{{x}}|")


def test_constant_template(cache: Cache) -> None:
    """A template without fields is one key for every call."""

    @cache.cached(ttl=1, key="config")
    async def config() -> dict[str, int]:
        return {}

    assert config.key_for({}).startswith(f"{cache.prefix}:config|")


def test_var_args_are_rejected(cache: Cache) -> None:
    """*args and **kwargs cannot be keyed."""
    with pytest.raises(ConfigError, match=r"\*args"):

        @cache.cached(ttl=1)
        async def get(*skus: str) -> int:
            return 1

    with pytest.raises(ConfigError, match=r"\*\*kwargs"):

        @cache.cached(ttl=1)
        async def get2(**skus: str) -> int:
            return 1


def test_sync_function_is_rejected(cache: Cache) -> None:
    """Only async def can be cached."""
    with pytest.raises(ConfigError, match="async def"):
        cache.cached(ttl=1)(lambda: 1)  # type: ignore[arg-type,return-value]


def test_missing_return_annotation_is_rejected(cache: Cache) -> None:
    """Without a return annotation values could not be decoded to their type."""
    with pytest.raises(ConfigError, match="annotate the return type"):

        @cache.cached(ttl=1)
        async def get(sku: str):  # type: ignore[no-untyped-def]
            return 1


def test_unserializable_return_type_is_rejected(cache: Cache) -> None:
    """A return type pydantic cannot serialize fails at decoration."""

    with pytest.raises(ConfigError, match="cannot be serialized"):

        @cache.cached(ttl=1)
        async def get(sku: str) -> Opaque:
            return Opaque()


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_rejected(cache: Cache, ttl: float) -> None:
    """ttl must be positive."""
    with pytest.raises(ConfigError, match="ttl"):

        @cache.cached(ttl=ttl)
        async def get(sku: str) -> int:
            return 1


def test_ignore_must_name_parameters(cache: Cache) -> None:
    """ignore= listing an unknown parameter is an error."""
    with pytest.raises(ConfigError, match="unknown parameters"):

        @cache.cached(ttl=1, ignore=["dbb"])
        async def get(sku: str, db: Any) -> int:
            return 1


async def test_unkeyable_argument_asks_for_a_template(cache: Cache) -> None:
    """An argument with no JSON form cannot enter the default key; the error says why."""

    @cache.cached(ttl=1)
    async def get(conn: object) -> int:
        return 1

    with pytest.raises(ConfigError, match="ignore="):
        await get(object())


async def test_wrong_call_arguments_raise_type_error(cache: Cache) -> None:
    """Calls with wrong arguments fail like the plain function would."""

    @cache.cached(ttl=1)
    async def get(sku: str, qty: int = 1) -> int:
        return qty

    with pytest.raises(TypeError, match="missing required argument 'sku'"):
        await get()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'sk'"):
        await get(sk="a")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        await get("a", sku="b")  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes 2 arguments"):
        await get("a", 1, 2)  # type: ignore[call-arg]


async def test_invalidate_needs_the_key_fields(cache: Cache) -> None:
    """invalidate() without a field of the key template says which is missing."""

    @cache.cached(ttl=1, key="p:{sku}")
    async def get(sku: str, lang: str) -> int:
        return 1

    assert await get.invalidate(sku="a") is True
    with pytest.raises(TypeError, match="needs argument 'sku'"):
        await get.invalidate(lang="en")


def test_escape_keeps_structure_characters_out() -> None:
    """Escaped parts contain none of the characters that structure keys."""
    assert escape("a:b{c}|d e%") == "a%3Ab%7Bc%7D%7Cd%20e%25"
    assert escape(42) == "42"


def test_decorated_function_keeps_its_identity(cache: Cache) -> None:
    """The wrapper keeps name, docstring and the original function."""

    @cache.cached(ttl=1)
    async def get(sku: str) -> int:
        """Doc."""
        return 1

    assert get.__name__ == "get"
    assert get.__doc__ == "Doc."
    assert get.__wrapped__ is get.func  # type: ignore[attr-defined]
