"""How ingest writes JSON: pydantic-core's serializer, with the json module as the reference.

- A record (sealed) is the UTF-8 JSON the json module writes with ``ensure_ascii=False``;
  the attributes (clear) are its ASCII form. For any JSON value both decode to the same
  value, and the bytes are the same except the spelling of floats below 1e-4.
- What pydantic-core refuses (a lone surrogate) goes through the json module, so a record
  fails exactly as before and the attributes still escape it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sellervault.records.service import attributes_json, record_json

leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
          | st.floats(allow_nan=False) | st.text())
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
documents = st.dictionaries(st.text(max_size=12), values, max_size=8)


def _reference(value: Any, *, ensure_ascii: bool) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii)


def _no_surrogates(value: Any) -> bool:
    try:
        _reference(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _small_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value != 0 and math.isfinite(value) and abs(value) < 1e-4
    if isinstance(value, list):
        return any(_small_floats(item) for item in value)
    if isinstance(value, dict):
        return any(_small_floats(item) for item in value.values())
    return False


@settings(max_examples=300, deadline=None)
@given(document=documents)
def test_records_and_attributes_match_the_json_module(document: dict[str, Any]) -> None:
    attributes = attributes_json(document)
    assert attributes.isascii()
    assert json.loads(attributes) == json.loads(_reference(document, ensure_ascii=True))
    if not _small_floats(document):
        assert attributes == _reference(document, ensure_ascii=True)
    if _no_surrogates(document):
        record = record_json(document)
        assert json.loads(record) == document
        if not _small_floats(document):
            assert record == _reference(document, ensure_ascii=False).encode()
    else:
        with pytest.raises(UnicodeEncodeError):
            record_json(document)


def test_an_order_shaped_document_is_byte_for_byte_the_same() -> None:
    document = {"AmazonOrderId": "902-1", "OrderTotal": {"CurrencyCode": "EUR", "Amount": "9.90"},
                "ShipServiceLevel": "Expédition \u2013 standard", "NumberOfItemsShipped": 0,
                "IsPrime": False, "PaymentMethodDetails": ["Standard"], "Missing": None}
    assert attributes_json(document) == json.dumps(document, separators=(",", ":"))
    assert record_json(document) == json.dumps(document, separators=(",", ":"),
                                          ensure_ascii=False).encode()
