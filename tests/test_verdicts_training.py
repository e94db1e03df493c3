"""The rules behind the training (ch. 2) and ablation (ch. 8) verdicts: each outcome from closed-form inputs."""

import math

import pytest

from zfkit import ablation, train


# ---------------------------------------------------------------- ch. 8: are Table 3's rows converged?

@pytest.mark.parametrize("errors, early", [
    ([30.0, 32.0, 34.0], True),     # 3.2x the converged error, noise 0.115
    ([10.0, 10.5, 11.0], False),    # 1.05x, well below 1.5
    ([14.0, 15.0, 16.0], None),     # 1.5x: on the limit
])
def test_early_training_compares_the_seed_mean_with_the_converged_error(errors, early):
    stage = ablation.early_training(errors, converged=10.0)
    assert stage["ratio"] == pytest.approx(sum(errors) / len(errors) / 10)
    assert stage["noise"] == pytest.approx(math.sqrt(sum((e - sum(errors) / 3) ** 2 for e in errors) / 2 / 3) / 10)
    assert stage["early"] is early


def test_early_training_rejects_a_zero_converged_error():
    with pytest.raises(ValueError, match="converged"):
        ablation.early_training([1.0, 2.0], converged=0.0)


# ---------------------------------------------------------------- ch. 2: the time target names its CPU

def test_cpu_name_reads_the_model_name_or_falls_back(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU 9000 @ 3.0GHz\nflags\t: fpu\n")
    real = train.Path

    def fake(path, *args):
        return info if str(path) == "/proc/cpuinfo" else real(path, *args)

    monkeypatch.setattr(train, "Path", fake)
    assert train.cpu_name() == "Example CPU 9000 @ 3.0GHz"
    info.unlink()  # no /proc/cpuinfo (macOS, Windows): platform's answer
    monkeypatch.setattr(train.platform, "processor", lambda: "arm")
    assert train.cpu_name() == "arm"
