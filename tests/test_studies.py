"""The Tables 2-3 study: its tasks, its resumable records, the plateau rule, and the tables it feeds."""

import json
from dataclasses import asdict

import pytest

from zfkit import ablation, filters, studies, zoo
from zfkit.train import Recipe


def test_tasks_cover_every_table3_row_and_table2s_extra_seeds():
    every = studies.tasks("book")
    budget = studies.BUDGETS["book"]
    assert len(budget.table3_seeds) >= 3 and len(budget.table2_seeds) >= 5  # issue #22's minimum
    pair = [t for t in every if t.row in studies.CLIPPING_ROWS]
    assert len(budget.clipping_seeds) >= 10 and len(pair) == 2 * len(budget.clipping_seeds)  # >= 10 seeds per arm
    assert every[-len(pair):] == pair  # the pair runs after the tables
    book = every[:-len(pair)]
    assert {t.row for t in book} == {r.name for r in ablation.ROWS}
    per_row = {r.name: sorted(t.seed for t in book if t.row == r.name) for r in ablation.ROWS}
    more = dict(budget.more_seeds)
    assert all(seeds == sorted(budget.table3_seeds + more.get(row, ())) for row, seeds in per_row.items()
               if row not in studies.TABLE2_ROWS)
    assert all(seeds == list(budget.table2_seeds) for row, seeds in per_row.items() if row in studies.TABLE2_ROWS)
    assert len({t.key for t in book}) == len(book) == 12 * 3 + 2 * 2 + sum(len(s) for s in more.values())
    with pytest.raises(ValueError, match="unknown study rows"):
        studies.tasks("book", rows=["resnet"])
    with pytest.raises(ValueError, match="ci or book"):
        studies.tasks("paper")


@pytest.mark.parametrize("errors, expected", [
    ([0.30, 0.20, 0.18, 0.15, 0.152, 0.149], True),   # annealed at 0.15, then within 0.1 point: 2 noise is 1.6
    ([0.30, 0.25, 0.20, 0.15, 0.13, 0.11], False),    # still falling by 4 points at the final rate
    ([0.30, 0.20, 0.18, 0.15, 0.145, 0.136], True),   # 1.4 points: inside 2 x sqrt(0.15 x 0.85 / 2000) = 1.6
    ([0.30, 0.20], False),                            # too short to tell
])
def test_plateaued_compares_the_final_epochs_with_the_binomial_noise(errors, expected):
    assert studies.plateaued(errors, val_images=2000, final=3) is expected
    with pytest.raises(ValueError, match="at least 2"):
        studies.plateaued(errors, val_images=2000, final=1)


def test_prepared_runs_share_images_and_differ_only_by_architecture_and_seed():
    a, b = studies.prepared(studies.Task("zfnet-mini-short", 0), "ci"), studies.prepared(studies.Task("alexnet-mini-no-fc7", 1), "ci")
    budget = studies.BUDGETS["ci"]
    assert len(a.train) == len(b.train) == budget.train_images and len(a.val) == budget.val_images
    assert (a.train.images == b.train.images).all() and (a.val.targets == b.val.targets).all()
    assert a.recipe.epochs == budget.epochs and a.recipe.seed == 0 and b.recipe.seed == 1


def test_run_is_resumable_and_writes_one_record_per_task(tmp_path, monkeypatch):
    trained = []

    def fake_train(task, profile, progress):
        trained.append(task.key)
        return {"row": task.row, "seed": task.seed, "test_top1": 10.0 + task.seed, "test_top5": 1.0,
                "val_top1": [20.0, 20.0], "sizes": {"val": 200},
                "budget": asdict(studies.BUDGETS["ci"]),
                "train_top1": 5.0, "converged": True, "parameters": 7, "minutes": 0.1}

    monkeypatch.setattr(studies, "_train", fake_train)
    rows = ["zfnet-mini-short", "alexnet-mini-no-fc7"]
    studies.run("ci", rows=rows, folder=tmp_path, progress=False)
    first = list(trained)
    assert len(first) == len(studies.tasks("ci", rows))
    (tmp_path / "alexnet-mini-no-fc7" / "seed1.json").unlink()   # as if killed before that run ended
    studies.run("ci", rows=rows, folder=tmp_path, progress=False)
    assert trained[len(first):] == ["alexnet-mini-no-fc7/seed1"]    # only the missing run trains again
    assert not list(tmp_path.rglob("*.tmp*"))
    stale = json.loads((tmp_path / "zfnet-mini-short" / "seed2.json").read_text()) | {"budget": {"epochs": 1}}
    (tmp_path / "zfnet-mini-short" / "seed2.json").write_text(json.dumps(stale))  # made with another budget
    studies.run("ci", rows=rows, folder=tmp_path, progress=False)
    assert trained[len(first) + 1:] == ["zfnet-mini-short/seed2"]   # retrained, not mixed into the table
    more_seeds = dict(json.loads((tmp_path / "zfnet-mini-short" / "seed1.json").read_text())) | {
        "budget": asdict(studies.BUDGETS["ci"]) | {"table3_seeds": [0, 1, 2, 3]}}
    (tmp_path / "zfnet-mini-short" / "seed1.json").write_text(json.dumps(more_seeds))  # more seeds: same runs
    studies.run("ci", rows=rows, folder=tmp_path, progress=False)
    assert trained[len(first) + 1:] == ["zfnet-mini-short/seed2"]
    loaded = studies.load(tmp_path, "ci")
    assert [r["seed"] for r in loaded["zfnet-mini-short"]] == [0, 1, 2]
    errors = studies.table2_errors({**loaded, "alexnet-mini-short": loaded["zfnet-mini-short"]}, "ci")
    assert errors["zfnet-mini-short"] == [10.0, 11.0, 12.0] and errors["plateaued"] == [True] * 6
    with pytest.raises(ValueError, match="make studies"):
        studies.table3_rows(loaded, "ci")   # the other Table 3 rows are missing


def test_one_real_ci_run_records_its_provenance(tmp_path):
    studies.run("ci", rows=["alexnet-mini-no-conv34-fc67"], folder=tmp_path, progress=False)
    record = json.loads((tmp_path / "alexnet-mini-no-conv34-fc67" / "seed0.json").read_text())
    assert record["profile"] == "ci" and len(record["val_top1"]) == studies.BUDGETS["ci"].epochs
    assert 0 <= record["test_top1"] <= 100 and record["commit"] and record["cpu"] and record["command"]
    assert isinstance(record["converged"], bool) and record["sizes"]["train"] == studies.BUDGETS["ci"].train_images


def test_the_clipping_pair_trains_as_the_zoo_does_and_feeds_fig6(tmp_path):
    as_zoo = zoo.prepare("zfnet-mini-clip", "ci", seed=1)
    assert studies.prepared(studies.Task("zfnet-mini-clip", 1), "ci").recipe == as_zoo.recipe
    studies.run("ci", rows=list(studies.CLIPPING_ROWS), folder=tmp_path, progress=False)
    records = studies.load(tmp_path, "ci")
    fig6 = studies.clipping_pair(records, "ci")
    seeds = list(studies.BUDGETS["ci"].clipping_seeds)
    assert fig6["seeds"] == seeds and len(fig6["acted"]) == len(fig6["clip"]["max_rms"]) == len(seeds)
    assert max(fig6["clip"]["max_rms"]) <= Recipe.clip_radius + 1e-6  # clipping bounds every filter's RMS
    weights = studies.clipping_filters(records, seed=seeds[0])
    assert weights["clip"].shape == weights["noclip"].shape == as_zoo.model.features.conv1.weight.shape
    assert fig6["clip"]["top_energy_share"][0] == pytest.approx(filters.top_energy_share(weights["clip"]))
    for acted, free, clipped in zip(fig6["acted"], fig6["noclip"]["max_rms"], fig6["clip"]["max_rms"]):
        assert acted or free == clipped  # a pair clipping never touched is one run twice
        assert acted or free <= Recipe.clip_radius + 1e-6  # it never acted: no filter ever passed the radius
    (tmp_path / "zfnet-mini-noclip" / f"seed{seeds[-1]}.json").unlink()
    with pytest.raises(ValueError, match="make studies"):
        studies.clipping_pair(studies.load(tmp_path, "ci"), "ci")


def test_load_names_the_fix_when_nothing_ran(tmp_path):
    with pytest.raises(FileNotFoundError, match="make studies"):
        studies.load(tmp_path / "absent")
