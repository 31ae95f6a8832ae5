"""What the translator ships to the meter can always be shipped and stored."""

from __future__ import annotations

import orjson

from core.usage import UsageEvent
from translator.converse_helpers import without_media
from translator.usage_spool import MAX_EVENT_BYTES, shippable


def event(**fields: object) -> UsageEvent:
    values: dict[str, object] = {
        "event_id": "00000000-0000-0000-0000-000000000001", "key_id": 1, "model": "m",
        "bedrock_model_id": "b", "occurred_at": 1.0, "input_tokens": 7, "output_tokens": 9,
    }  # fmt: skip
    values.update(fields)
    return UsageEvent(**values)  # type: ignore[arg-type]


def test_a_small_event_ships_as_it_is() -> None:
    small = event(prompt="hi", whole_prompt=[{"role": "user", "content": "hi"}])
    shipped, encoded = shippable(small)
    assert shipped is small and encoded == orjson.dumps(small)


def test_a_huge_event_keeps_its_figures_and_loses_only_chat_log_text() -> None:
    huge = event(prompt="p" * (8 * 2**20), completion="c" * 10, whole_prompt=["w" * 2**20])
    shipped, encoded = shippable(huge)
    assert len(encoded) <= MAX_EVENT_BYTES
    assert (shipped.input_tokens, shipped.output_tokens, shipped.event_id) == (7, 9, huge.event_id)
    assert shipped.whole_prompt is None and shipped.completion == "c" * 10
    assert shipped.prompt.startswith("p" * 1000) and "cut: the chat log keeps" in shipped.prompt


def test_an_event_too_deeply_nested_to_write_still_ships() -> None:
    deep: object = "x"
    for _ in range(300):
        deep = [deep]
    shipped, encoded = shippable(event(whole_prompt=deep))
    assert shipped.whole_prompt is None and orjson.loads(encoded)["input_tokens"] == 7


def test_the_chat_log_keeps_a_note_of_each_image_not_its_data() -> None:
    data = "A" * 4000
    prompt = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": data}}
            ],
        },
    ]
    kept = orjson.dumps(without_media(prompt))
    assert data.encode() not in kept
    assert b"[image/png, 3000 bytes, not kept]" in kept and b"[image/jpeg, 3000 bytes, not kept]" in kept
