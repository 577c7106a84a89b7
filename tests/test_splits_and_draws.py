"""Split schemes (Table A1 and the §2 sentence) and few-shot draws, against hand
counts."""

import numpy as np
import pandas as pd
import pytest

from sarslide.chips import (
    SPLITS,
    ChipError,
    ChipSet,
    assign_splits,
    few_shot_subset,
    split_counts,
    split_table,
    table_a1_difference,
)


def _chipset(n_pos: int, n_neg: int, event: str = "hokkaido", size: int = 4) -> ChipSet:
    """``n_pos`` landslide and ``n_neg`` landslide-free chips (one landslide pixel
    each)."""
    n = n_pos + n_neg
    labels = np.zeros((n, size, size), dtype=np.uint16)
    labels[:n_pos, 0, 0] = 1
    meta = pd.DataFrame(
        {
            "chip_id": [f"c{i}" for i in range(n)],
            "has_landslide": labels.reshape(n, -1).any(axis=1),
            "split": "unassigned",
        }
    )
    images = np.ones((n, 4, size, size), dtype=np.float32)
    return ChipSet(images=images, labels=labels, meta=meta, attrs={"event": event})


def test_table_a1_counts_are_reproduced_exactly():
    assert split_counts(552, "table_a1", event="hokkaido") == dict(
        zip(SPLITS, (331, 110, 55, 56))
    )
    assert split_counts(2174, "table_a1", event="kaikoura") == dict(
        zip(SPLITS, (1630, 0, 272, 272))
    )
    # The sentence of §2: 50 / 25 / 12.5 / 12.5 — 552 gives 276 / 138 / 69 / 69.
    assert split_counts(552, "text") == dict(zip(SPLITS, (276, 138, 69, 69)))


def test_split_counts_rounding_rule_is_largest_remainder():
    # 10 chips at 50/25/12.5/12.5: exact 5, 2.5, 1.25, 1.25 -> floors 5, 2, 1, 1 (9);
    # the one left goes to the largest remainder (stage2_train, 0.5).
    assert list(split_counts(10, "text").values()) == [5, 3, 1, 1]
    # Ties go to the earlier split: 4 chips in quarters of 0.25 each are exact; 2 chips
    # at (0.25, 0.25, 0.25, 0.25) -> remainders all 0.5 -> the first two splits.
    assert list(split_counts(2, (0.25, 0.25, 0.25, 0.25)).values()) == [1, 1, 0, 0]
    for n in (0, 1, 7, 100, 551, 553):
        assert sum(split_counts(n, "table_a1", event="hokkaido").values()) == n


def test_table_a1_split_of_552_balanced_chips_has_the_table_totals():
    chips = assign_splits(_chipset(276, 276), "table_a1", seed=3)
    table = split_table(chips)
    assert list(table.loc[list(SPLITS), "total"]) == [331, 110, 55, 56]
    # Not stratified (the authors' notebook's test set held 32 landslide and 24
    # landslide-free chips):
    # the per-class counts are whatever the seeded permutation gives, but they sum up.
    assert table.loc["total", "landslide"] == 276
    kaikoura = assign_splits(_chipset(1087, 1087, event="kaikoura"), "table_a1", seed=0)
    counts = kaikoura.meta["split"].value_counts()
    assert (
        counts["stage1_train"] == 1630
        and counts["validation"] == 272
        and counts["test"] == 272
    )
    assert "stage2_train" not in counts  # Kaikōura has no segmentation split


def test_table_a1_counts_need_exactly_552_balanced_chips_else_a_warning():
    assert table_a1_difference(552, "hokkaido") is None
    assert table_a1_difference(_chipset(276, 276)) is None  # event from the chip set
    message = table_a1_difference(434, "hokkaido")
    assert (
        "434 balanced chips, not Table A1's 552" in message
        and "shares, not its counts" in message
    )
    with pytest.warns(UserWarning, match="300 balanced chips, not Table A1's 552"):
        chips = assign_splits(_chipset(150, 150), "table_a1", seed=0)
    assert len(chips) == 300  # still split, by the table's shares
    with pytest.raises(ChipError, match="Table A1 lists"):
        table_a1_difference(10, "iburi")


def test_text_scheme_is_stratified_and_balanced():
    chips = assign_splits(_chipset(120, 120), "text", seed=1)
    table = split_table(chips)
    assert list(table.loc[list(SPLITS), "landslide"]) == [60, 30, 15, 15]
    assert list(table.loc[list(SPLITS), "landslide_free"]) == [60, 30, 15, 15]


def test_bad_schemes_name_the_fix():
    with pytest.raises(ChipError, match="needs event="):
        split_counts(10, "table_a1")
    with pytest.raises(ChipError, match="unknown split scheme 'thirds'"):
        split_counts(10, "thirds")
    with pytest.raises(ChipError, match="summing to 1"):
        split_counts(10, (0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ChipError, match="non-negative integer"):
        split_counts(2.5, "text")
    # A zero share is allowed (Kaikōura's stage 2); a positive share left empty is not.
    with pytest.raises(ChipError, match=r"\['validation', 'test'\] would be empty"):
        assign_splits(_chipset(2, 2), (0.5, 0.3, 0.1, 0.1), seed=0)


def test_random_draws_reproduce_and_can_hold_no_landslide():
    pool = _chipset(23, 23)
    a = few_shot_subset(pool, 2, seed=4, draw="random")
    np.testing.assert_array_equal(a, few_shot_subset(pool, 2, seed=4, draw="random"))
    draws = [few_shot_subset(pool, 2, seed=s, draw="random") for s in range(400)]
    n_free = sum(not pool.has_landslide[d].any() for d in draws)
    # P(no landslide in 2 of 23+23) = (23/46)(22/45) = 0.244; 400 draws: expect 98 ± 17.
    assert 60 < n_free < 140
    assert all(len(set(d)) == 2 for d in draws)
    assert not np.array_equal(few_shot_subset(pool, 5, 0), few_shot_subset(pool, 5, 1))
    np.testing.assert_array_equal(few_shot_subset(pool, None, 0), np.arange(46))


def test_balanced_draw_keeps_half_landslides():
    pool = _chipset(23, 23)
    for seed in range(20):
        d = few_shot_subset(pool, 5, seed, draw="balanced")
        assert pool.has_landslide[d].sum() == 3
    with pytest.raises(ChipError, match="holds only 46 chips"):
        few_shot_subset(pool, 47, 0)
    with pytest.raises(ChipError, match="unknown few-shot draw"):
        few_shot_subset(pool, 2, 0, draw="stratified")
    with pytest.raises(ChipError, match="positive integer"):
        few_shot_subset(pool, 2.5, 0)


def test_draw_composition_counts_the_drawn_landslide_chips():
    from sarslide.chips import draw_composition

    pool = _chipset(10, 10)
    table = draw_composition(pool, [2, 5, None, 50], seeds=range(6))
    assert set(table["train_size"]) == {
        2,
        5,
        20,
    }  # 50 > pool: skipped; None = whole pool
    for row in table.itertuples():
        idx = few_shot_subset(
            pool,
            None if row.train_size == 20 else row.train_size,
            row.seed,
            draw=row.draw,
        )
        assert row.landslide_chips == int(pool.has_landslide[idx].sum())
        assert row.landslide_pixels == int((pool.labels[idx] > 0).sum())
    balanced = table[(table["draw"] == "balanced") & (table["train_size"] == 5)]
    assert (balanced["landslide_chips"] == 3).all()
