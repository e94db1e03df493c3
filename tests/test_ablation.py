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


@pytest.mark.parametrize("difference, early, verdict", [
    (5.0, False, True), (5.0, True, None), (1.0, False, None), (-5.0, False, False), (-5.0, True, None)])
def test_judge_needs_two_noise_and_decides_neither_way_in_early_training(difference, early, verdict):
    assert ablation.judge(difference, noise=2.0, early_training=early) is verdict


def test_compare_can_use_the_baselines_seed_means():
    c = ablation.compare(_table(), baselines={"alexnet-mini-short": 36.0, "zfnet-mini-short": 33.0})
    assert c.delta_vs_alexnet["alexnet-mini-no-conv34"] == 1  # 37 - 36, not 37 - 35
    assert c.fc_width_deltas["zfnet-mini-fc-wide"] == -2
    assert c.conv_wide_gain == 3
    assert c.conv_fc_wide_vs_conv_wide == {"test": 1, "gap": 11}  # two variants: no baseline involved


def test_yardsticks_from_the_seed_spreads():
    spread = {"alexnet-mini-short": {"seeds": [0, 1, 2, 3, 4], "std": 2.0},
              "zfnet-mini-short": {"seeds": [0, 1, 2, 3, 4], "std": 1.0, "gap_std": 0.5}}
    sticks = ablation.yardsticks(spread, {"alexnet-mini-short": 40.0, "zfnet-mini-short": 20.0})
    assert sticks["k"] == pytest.approx(2.776, abs=1e-3)  # Student's t for 5 seeds
    assert sticks["vs_mean"]["alexnet"] == pytest.approx(2.0 * (1 + 1 / 5) ** 0.5)
    assert sticks["between"]["zfnet"] == pytest.approx(2 ** 0.5)
    assert sticks["slight"] == {"alexnet": pytest.approx(6.0), "zfnet": pytest.approx(3.0)}  # 15 % of the error
    assert sticks["gap_noise"] == pytest.approx(0.5 * 2 ** 0.5)
