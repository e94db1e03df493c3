"""Chapter results JSON: deterministic layout, atomic replacement, found next to the notebook."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from zfkit.results import load_results, notebook_dir, save_results


def test_round_trip_with_numpy_and_torch_scalars(tmp_path):
    data = {"b": np.int64(3), "a": (1, 2.5), "c": {"t": torch.tensor(0.25), "n": np.float32(0.5), "ok": np.bool_(True)}}
    path = save_results("01_x", data, tmp_path)
    assert path == tmp_path / "01_x.json"
    assert load_results("01_x", tmp_path) == {"a": [1, 2.5], "b": 3, "c": {"n": 0.5, "ok": True, "t": 0.25}}


def test_layout_is_sorted_indented_and_stable(tmp_path):
    path = save_results("ch", {"z": 1, "a": [1, 2]}, tmp_path)
    text = path.read_text()
    assert text == json.dumps({"a": [1, 2], "z": 1}, indent=2, sort_keys=True) + "\n"
    save_results("ch", {"a": [1, 2], "z": 1}, tmp_path)
    assert path.read_text() == text


def test_file_is_world_readable_and_no_temp_file_remains(tmp_path):
    path = save_results("ch", {"a": 1}, tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ch.json"]


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, {"x": np.zeros(3)}])
def test_a_failed_write_keeps_the_old_file(tmp_path, bad):
    path = save_results("ch", {"a": 1}, tmp_path)
    with pytest.raises(ValueError):
        save_results("ch", bad, tmp_path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ch.json"]


def test_rejects_non_mappings_and_path_like_chapters(tmp_path):
    with pytest.raises(ValueError, match="mapping"):
        save_results("ch", [1, 2], tmp_path)
    for chapter in ("", "../ch", "a/b"):
        with pytest.raises(ValueError, match="chapter"):
            save_results(chapter, {}, tmp_path)


def test_default_folder_is_build_results_of_the_repository(tmp_path, monkeypatch):
    """Only `make book` writes the committed book/results: a JupyterLab or nbval run writes under _build."""
    monkeypatch.delenv("ZFKIT_RESULTS", raising=False)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_ch.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)  # the repository root: the notebook lives in book/
    assert notebook_dir("01_ch") == tmp_path / "book"
    assert save_results("01_ch", {"a": 1}) == tmp_path / "_build" / "results" / "01_ch.json"
    monkeypatch.chdir(tmp_path / "book")  # Jupyter, nbval and zfkit.notebooks run in the notebook's folder
    assert save_results("01_ch", {"a": 2}) == tmp_path / "_build" / "results" / "01_ch.json"
    assert load_results("01_ch") == {"a": 2}
    assert not (tmp_path / "book" / "results").exists()
    assert save_results("01_ch", {"a": 3}, "results") == tmp_path / "book" / "results" / "01_ch.json"


def test_results_env_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFKIT_RESULTS", str(tmp_path / "book-results"))
    monkeypatch.chdir(tmp_path)
    assert save_results("01_ch", {"a": 1}) == tmp_path / "book-results" / "01_ch.json"


def test_unknown_notebook_falls_back_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert notebook_dir("nowhere") == tmp_path


def test_missing_results_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the chapter"):
        load_results("ch", tmp_path)


def test_verdict_table_renders_and_records():
    from zfkit.results import Verdict, verdict_table

    from zfkit.verdicts import NOT_TESTABLE

    table = verdict_table([Verdict("a | b", "0.9", True, noise="± 0.1 over 5 seeds"),
                           Verdict("c", "0.1", False, "null result", noise="± 0.01"),
                           Verdict("d", "?", None, noise="± 1", needed="20 seeds"),
                           Verdict("e", "0 vs 0", NOT_TESTABLE, precondition="no dead filter in either net")])
    md = table._repr_markdown_()
    assert md.count("\n") == 5 and "a \\| b" in md and "**not reproduced**: null result; noise: ± 0.01" in md
    assert "**not testable**: precondition failed: no dead filter in either net" in md
    assert md.startswith("| Paper's claim |")
    assert [r["verdict"] for r in table.records()] == ["reproduced", "not reproduced", "inconclusive", "not testable"]
    assert type(table).from_records(table.records())._repr_markdown_() == md
    with pytest.raises(ValueError, match="Verdict"):
        verdict_table([])


def test_claim_rows_must_state_noise_and_an_inconclusive_row_its_budget():
    from zfkit.results import Verdict, verdict_table

    with pytest.raises(ValueError, match="states no noise"):
        verdict_table([Verdict("a", "1", True)])
    with pytest.raises(ValueError, match="without `needed`"):
        verdict_table([Verdict("a", "1", None, noise="± 1")])
    with pytest.raises(ValueError, match="name the failed precondition"):
        from zfkit.verdicts import NOT_TESTABLE
        Verdict("a", "1", NOT_TESTABLE)


@pytest.mark.parametrize("value, outcome, label", [(5.0, True, "reproduced"), (-5.0, False, "not reproduced"),
                                                   (1.0, None, "inconclusive")])
def test_decided_rows_carry_threshold_flip_point_and_budget(value, outcome, label):
    from zfkit.results import Verdict, verdict_table
    from zfkit.verdicts import decide

    row = Verdict.decided("claim", "m", decide(value, 0.0, 1.0, samples=5), noise="± 1 over 5 seeds",
                          why="no difference", unit="seeds")
    record = verdict_table([row]).records()[0]
    assert record["verdict"] == label and record["holds"] is outcome
    assert record["threshold"] == {"value": 0.0, "source": "ours", "why": "no difference"}
    k = 2.7764451051977934
    assert record["flips_at"] == pytest.approx(value - k if value > 0 else value + k, abs=1e-6)
    assert ("needed" in record) is (outcome is None)
    if outcome is None:
        assert record["needed"].startswith("22 seeds")  # t(21) x sqrt(5/22) = 0.991 < 1, t(20) x sqrt(5/21) = 1.018


def test_decided_rows_need_a_reason_for_the_threshold_and_samples_when_undecided():
    from zfkit.results import Verdict
    from zfkit.verdicts import decide

    with pytest.raises(ValueError, match="why"):
        Verdict.decided("c", "m", decide(5.0, 0.0, 1.0, samples=5), noise="± 1")
    with pytest.raises(ValueError, match="pass samples="):
        Verdict.decided("c", "m", decide(1.0, 0.0, 1.0), noise="± 1", why="w")


def test_checks_are_a_separate_table_and_saved_as_records(tmp_path):
    from zfkit.results import Verdict, check_table, verdict_table

    checks = check_table([Verdict("engine = oracle", "cosine 1.000000", True), Verdict("target", "91 %", False)])
    assert checks._repr_markdown_().startswith("| Our check | Measurement | Result |")
    assert [r["verdict"] for r in checks.records()] == ["passed", "failed"]
    claims = verdict_table([Verdict("claim", "x", None, noise="± 1", needed="9 seeds")])
    save_results("ch", {"verdicts": claims, "checks": checks}, tmp_path)
    saved = load_results("ch", tmp_path)
    assert saved["checks"][0] == {"claim": "engine = oracle", "measured": "cosine 1.000000", "holds": True, "note": "",
                                  "verdict": "passed"}
    assert saved["verdicts"][0]["verdict"] == "inconclusive" and saved["verdicts"][0]["holds"] is None


def test_verdict_changes_lists_only_the_rows_that_moved(tmp_path):
    from zfkit.results import Verdict, verdict_changes, verdict_table

    def save(folder, holds):
        rows = [Verdict("steady", "1", True, noise="± 0"), Verdict("moves", "2", holds, noise="± 0", needed="9 seeds" if holds is None else None), Verdict(f"only {folder}", "3", None, noise="± 1", needed="9 seeds")]
        save_results("02_ch", {"verdicts": verdict_table(rows)}, tmp_path / folder)

    save("a", True)
    save("b", None)
    save_results("03_only_a", {"verdicts": verdict_table([Verdict("x", "1", True, noise="± 0")])}, tmp_path / "a")
    assert verdict_changes(tmp_path / "a", tmp_path / "b") == [
        ("02_ch", "moves", "reproduced", "inconclusive"), ("02_ch", "only a", "inconclusive", "missing"),
        ("02_ch", "only b", "missing", "inconclusive")]
    assert verdict_changes(tmp_path / "a", tmp_path / "a") == []
    with pytest.raises(FileNotFoundError, match="no results folder"):
        verdict_changes(tmp_path / "a", tmp_path / "nowhere")
