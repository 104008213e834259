"""Bad data on the training page: each problem is shown by file name and training cannot start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.sample_data import learnable_tabular_csv
from tests.browser.train_helpers import open_train_page, write_shapes

pytestmark = pytest.mark.browser


def problems_shown(page) -> str:
    page.wait_for_function("() => !document.getElementById('data-problems').hidden", timeout=30_000)
    return page.inner_text("#data-problems")


def test_a_csv_missing_a_column_is_named_and_blocks_training(live_platform, page, tmp_path: Path):
    lines = learnable_tabular_csv(50).splitlines()
    without_c = [",".join(cell for i, cell in enumerate(line.split(",")) if i != 2) for line in lines]
    (tmp_path / "no_c.csv").write_text("\n".join(without_c) + "\n")
    open_train_page(page, live_platform["url"], "tiny_tabular")
    page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "no_c.csv")
    text = problems_shown(page)
    assert "no_c.csv" in text and "Missing column(s) c" in text
    assert page.is_disabled("#start-btn")


def test_an_image_with_an_unknown_label_is_named_and_blocks_training(live_platform, page, tmp_path: Path):
    groups = write_shapes(tmp_path / "img", 6, seed=3)
    images = [path for files in groups.values() for path in files]
    lines = ["filename,label"] + [f"{p.name},{p.name.split('-')[0]}" for p in images[:-1]]
    lines.append(f"{images[-1].name},triangle")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    open_train_page(page, live_platform["url"], "tiny_shapes")
    page.check("#train-connector input[name=train-mode][value=csv]")
    page.set_input_files("#train-connector input[data-slot=csv]", tmp_path / "labels.csv")
    page.set_input_files("#train-connector input[data-slot=images]", images)
    page.wait_for_function("() => document.getElementById('data-problems').innerText.includes('triangle')",
                           timeout=30_000)
    text = problems_shown(page)
    assert images[-1].name in text and 'label "triangle"' in text
    assert page.is_disabled("#start-btn")


def test_an_empty_text_file_is_named_and_blocks_training(live_platform, page, tmp_path: Path):
    (tmp_path / "empty.txt").write_text("")
    open_train_page(page, live_platform["url"], "tiny_text")
    page.set_input_files("#train-connector input[data-slot=text]", tmp_path / "empty.txt")
    text = problems_shown(page)
    assert "empty.txt" in text
    assert page.is_disabled("#start-btn")
    page.click("#start-btn", force=True)  # a click on the disabled button starts nothing
    assert page.evaluate("window.discoTrain.state") == "ready" and page.evaluate("window.discoTrain.history") == []
