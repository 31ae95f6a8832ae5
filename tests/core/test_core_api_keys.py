"""Virtual API keys: format, randomness, hashing at rest, and the credential headers."""

from __future__ import annotations

import hashlib
import re
import string

import pytest

from core.api_keys import KEY_PREFIX, bearer_token, display_prefix, generate_key, hash_key, hashes_equal

KEY_FORMAT = re.compile(r"br-[A-Za-z0-9]{40}")


def test_generated_key_format() -> None:
    key = generate_key()
    assert KEY_PREFIX == "br-"
    assert KEY_FORMAT.fullmatch(key), key
    assert len(key) == 43


def test_many_generated_keys_are_unique_and_use_the_whole_alphabet() -> None:
    keys = [generate_key() for _ in range(3000)]
    assert all(KEY_FORMAT.fullmatch(k) for k in keys)
    assert len(set(keys)) == len(keys)
    assert len({hash_key(k) for k in keys}) == len(keys)
    used = set("".join(k[3:] for k in keys))
    assert used == set(string.ascii_letters + string.digits)


@pytest.mark.parametrize(
    ("key", "hex_digest"),
    [
        pytest.param(
            "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id="nist-vector"
        ),
        pytest.param("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"),
        pytest.param("br-" + "A" * 40, hashlib.sha256(b"br-" + b"A" * 40).hexdigest(), id="key-shaped"),
        pytest.param("br-é", hashlib.sha256("br-é".encode()).hexdigest(), id="utf-8-encoded"),
    ],
)
def test_hash_key_is_sha256(key: str, hex_digest: str) -> None:
    digest = hash_key(key)
    assert isinstance(digest, bytes)
    assert len(digest) == 32
    assert digest.hex() == hex_digest


def test_hashes_equal() -> None:
    key = generate_key()
    assert hashes_equal(hash_key(key), hash_key(key))
    assert not hashes_equal(hash_key(key), hash_key(key + "x"))
    assert not hashes_equal(hash_key(key), b"")


def test_display_prefix_shows_four_characters_after_br() -> None:
    assert display_prefix("br-AbCdEfGhIj" + "x" * 30) == "br-AbCd"
    key = generate_key()
    assert display_prefix(key) == key[:7]


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "token"),
    [
        pytest.param("Bearer br-abc", None, "br-abc", id="bearer"),
        pytest.param("bearer br-abc", None, "br-abc", id="lowercase-scheme"),
        pytest.param("BEARER br-abc", None, "br-abc", id="uppercase-scheme"),
        pytest.param("  Bearer   br-abc  ", None, "br-abc", id="extra-whitespace"),
        pytest.param(None, "br-abc", "br-abc", id="x-api-key"),
        pytest.param(None, "  br-abc ", "br-abc", id="x-api-key-stripped"),
        pytest.param("Bearer br-one", "br-two", "br-one", id="bearer-wins-over-x-api-key"),
        pytest.param("Basic dXNlcjpwYXNz", "br-two", "br-two", id="other-scheme-falls-back"),
        pytest.param("Bearer", "br-two", "br-two", id="bearer-without-token-falls-back"),
        pytest.param("Bearer    ", "br-two", "br-two", id="bearer-blank-token-falls-back"),
        pytest.param("br-abc", None, None, id="no-scheme"),
        pytest.param("Basic dXNlcjpwYXNz", None, None, id="basic-only"),
        pytest.param("", "", None, id="both-empty"),
        pytest.param(None, "   ", None, id="blank-x-api-key"),
        pytest.param(None, None, None, id="nothing"),
        pytest.param("Token br-abc", None, None, id="token-scheme"),
    ],
)
def test_bearer_token(authorization: str | None, x_api_key: str | None, token: str | None) -> None:
    assert bearer_token(authorization, x_api_key) == token


def test_bearer_token_x_api_key_is_optional() -> None:
    assert bearer_token("Bearer k") == "k"
    assert bearer_token(None) is None
