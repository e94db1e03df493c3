"""Table 3's rows (zfkit.ablation): names, the paper's numbers, and one measured row end to end."""

import pytest

from zfkit import ablation, train, zoo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_are_zoo_models_with_table3s_numbers():
    assert {r.name for r in ablation.ROWS} <= set(zoo.NAMES)
    assert set(zoo.TABLE3) <= {r.name for r in ablation.ROWS}
    paper = {r.name: r.paper for r in ablation.ROWS}
    assert paper["alexnet-mini-no-conv34-fc67"] == (71.1, 71.3, 50.1)  # Table 3: "Removed layer 3,4,6,7"
    assert paper["zfnet-mini-short"] == (33.1, 38.4, 16.5)  # "Our Model (as per Fig. 3)"
    assert paper["zfnet-mini-conv-fc-wide"] == (10.0, 38.3, 16.9)


def test_table_renders_every_row_and_finds_rows_by_name():
    table = ablation.Table([{"name": "a", "label": "row A", "parameters": 1234, "train_top1": 1.0, "test_top1": 2.0,
                             "test_top5": 0.5, "paper_train_top1": 3.0, "paper_val_top1": 4.0, "paper_val_top5": 5.0}])
    text = table._repr_markdown_()
    assert "| row A | 1,234 | 1.0 | 2.0 | 0.5 | 3.0 | 4.0 | 5.0 |" in text
    assert table.row("a")["label"] == "row A"
    with pytest.raises(KeyError, match="no row 'b'; rows are a"):
        table.row("b")


def test_measure_scores_a_trained_row(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFKIT_CACHE", str(tmp_path))
    row = next(r for r in ablation.ROWS if r.name == "alexnet-mini-no-conv34-fc67")
    (measured,) = ablation.measure("ci", rows=(row,), progress=False)
    model, record, run = zoo.load(row.name, "ci"), zoo.metrics(row.name, "ci"), zoo.prepare(row.name, "ci")
    assert measured["parameters"] == sum(p.numel() for p in model.parameters())
    assert measured["test_top1"] == pytest.approx(100 * record["test"]["top1_err"])
    assert measured["train_top1"] == pytest.approx(100 * train.evaluate(model, run.train)["top1_err"])
    assert 0 <= measured["train_top1"] <= 100 and measured["paper_val_top1"] == 71.3
    assert [c.name for c in model.spec.convs] == ["conv1", "conv2", "conv5"] and model.spec.fc_names == ()


def _row(name, train, test, parameters=100):
    return {"name": name, "train_top1": train, "test_top1": test, "parameters": parameters}


def _table() -> ablation.Table:
    return ablation.Table([
        _row("alexnet-mini-short", 30, 35, 1000), _row("alexnet-mini-no-conv34", 31, 37),
        _row("alexnet-mini-no-fc67", 30, 34, 400), _row("alexnet-mini-no-conv34-fc67", 40, 45),
        _row("alexnet-mini-no-fc7", 30, 36), _row("alexnet-mini-fc-narrow", 30, 35.5),
        _row("alexnet-mini-fc-wide", 30, 33), _row("zfnet-mini-short", 30, 32),
        _row("zfnet-mini-fc-narrow", 30, 33), _row("zfnet-mini-fc-wide", 30, 31),
        _row("zfnet-mini-conv-wide", 20, 30), _row("zfnet-mini-conv-fc-wide", 10, 31),
    ])


def test_compare_derives_each_conclusions_difference():
    table = _table()
    c = ablation.compare(table)
    assert c.delta_vs_alexnet == {"alexnet-mini-no-conv34": 2, "alexnet-mini-no-fc67": -1,
                                  "alexnet-mini-no-conv34-fc67": 10, "alexnet-mini-no-fc7": 1}
    assert c.fc_parameter_share == pytest.approx(0.6)
    assert c.fc_width_deltas == {"alexnet-mini-fc-narrow": 0.5, "alexnet-mini-fc-wide": -2,
                                 "zfnet-mini-fc-narrow": 1, "zfnet-mini-fc-wide": -1}
    assert c.conv_wide_gain == 2
    assert c.conv_fc_wide_vs_conv_wide == {"test": 1, "gap": 11}  # gaps 21 vs 10
    assert c.records()["conv_wide_gain"] == 2


def test_compare_can_use_the_baselines_seed_means():
    c = ablation.compare(_table(), baselines={"alexnet-mini-short": 36.0, "zfnet-mini-short": 33.0})
    assert c.delta_vs_alexnet["alexnet-mini-no-conv34"] == 1  # 37 - 36, not 37 - 35
    assert c.fc_width_deltas["zfnet-mini-fc-wide"] == -2
    assert c.conv_wide_gain == 3
    assert c.conv_fc_wide_vs_conv_wide == {"test": 1, "gap": 11}  # two variants: no baseline involved


def test_with_seeds_gives_each_baseline_its_seeds_and_every_row_the_budgets_stage():
    spread = {"zfnet-mini-short": {"seeds": [0, 1, 2], "test_top1": [31.0, 32.0, 36.0], "train_top1": [29.0, 30.0, 31.0]},
              "alexnet-mini-short": {"seeds": [0, 1], "test_top1": [35.0, 37.0]}}
    rows = {r["name"]: r for r in ablation.with_seeds(_table(), spread, {"ratio": 1.1, "noise": 0.1, "early": False})}
    zf, alex, wide = rows["zfnet-mini-short"], rows["alexnet-mini-short"], rows["zfnet-mini-conv-wide"]
    assert zf["seeds"] == [0, 1, 2] and zf["test_top1"] == 33.0 and zf["train_top1"] == 30.0
    assert zf["train_top1_seeds"] == [29.0, 30.0, 31.0]
    assert alex["test_top1"] == 36.0 and "train_top1_seeds" not in alex  # its spread scored no training images
    assert wide == {**_table().row("zfnet-mini-conv-wide"), "seeds": [0], "test_top1_seeds": [30],
                    "train_top1_seeds": [20], "converged": True}
    for stage in (True, None):  # in early training, or too close to the limit to tell: not converged
        assert not any(r["converged"] for r in ablation.with_seeds(_table(), spread, {"early": stage}))
