"""Few-shot slice selection: size, determinism, order independence, errors."""

from __future__ import annotations

import math
import random

import pytest

from monaiseg.data.few_shot import few_shot_subset


def slices(cases=4, depth=25) -> list[dict]:
    return [
        {
            "image": f"slices/case{c:04d}_z{z:03d}_image.npy",
            "label": f"slices/case{c:04d}_z{z:03d}_label.npy",
            "case": f"case{c:04d}",
            "slice": z,
        }
        for c in range(1, cases + 1)
        for z in range(depth)
    ]


def keys(items) -> list[tuple]:
    return [(i["case"], i["slice"]) for i in items]


def test_size_uniqueness_and_sorted_subset():
    items = slices(cases=5, depth=19)  # 95 slices -> floor(9.5) = 9, as upstream int(n * 0.1)
    chosen = few_shot_subset(items, 0.1, seed=3)
    assert len(chosen) == 9 and len(set(keys(chosen))) == 9
    assert all(c in items for c in chosen) and keys(chosen) == sorted(keys(chosen))
    assert len(few_shot_subset(items, 0.3)) == math.floor(95 * 0.3)
    assert keys(few_shot_subset(items, 1.0)) == keys(items)
    assert len(few_shot_subset(items[:5], 0.1)) == 1  # at least one item


def test_deterministic_and_independent_of_input_order():
    items = slices()
    first = few_shot_subset(items, 0.1, seed=0)
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert keys(few_shot_subset(shuffled, 0.1, seed=0)) == keys(first)
    assert keys(few_shot_subset(items, 0.1, seed=0)) == keys(first)
    assert keys(few_shot_subset(items, 0.1, seed=1)) != keys(first)


def test_returns_copies():
    items = slices(cases=1, depth=10)
    chosen = few_shot_subset(items, 0.5)
    chosen[0]["case"] = "changed"
    assert all(i["case"] == "case0001" for i in items)


@pytest.mark.parametrize(
    "items, fraction, message",
    [
        ([], 0.1, "no training items"),
        (slices(1, 10), 0.0, "would be empty"),
        (slices(1, 10), -0.2, "would be empty"),
        (slices(1, 10), float("nan"), "would be empty"),
        (slices(1, 10), 1.5, "larger than the training set"),
    ],
)
def test_empty_selection_is_refused(items, fraction, message):
    with pytest.raises(ValueError, match=message):
        few_shot_subset(items, fraction)
