"""§3/§4.1 arithmetic: Fig. 3 map sizes, first-layer sampling, aliasing measured on a grating."""

import json

import pytest
import torch

from zfkit import arch, models


def test_map_sizes_follow_fig3_with_ceil_pooling(zf):
    # Fig. 3: 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6
    assert arch.map_sizes(zf) == {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13,
                                  "conv3": 13, "conv4": 13, "conv5": 13, "pool5": 6}


def test_floor_pooling_misses_fig3(zf):
    # by hand: floor((110-3)/2)+1 = 54, floor((54-5)/2)+1 = 25, floor((25-3)/2)+1 = 12, floor((12-3)/2)+1 = 5
    sizes = arch.map_sizes(zf.spec, ceil=False)
    assert (sizes["pool1"], sizes["conv2"], sizes["pool2"], sizes["pool5"]) == (54, 25, 12, 5)


def test_map_sizes_agree_with_a_forward_pass(alex):
    rows = models.describe(alex)
    assert all(rows.row(name).output_shape[-1] == size for name, size in arch.map_sizes(alex).items())


def test_map_sizes_rejects_foreign_models():
    with pytest.raises(ValueError, match="zfkit model"):
        arch.map_sizes(torch.nn.Linear(2, 2))


def test_first_layers_of_the_two_nets(zf, alex):
    z, a = arch.first_layer(zf), arch.first_layer(alex)
    assert (z.kernel, z.stride, z.padding, z.output_size) == (7, 2, 1, 110)
    assert (a.kernel, a.stride, a.padding, a.output_size) == (11, 4, 2, 55)
    assert z.params == 96 * 7 * 7 * 3 + 96 == 14_208
    assert a.params == 96 * 11 * 11 * 3 + 96 == 34_944
    assert z.macs == 7 * 7 * 3 * 96 * 110 * 110
    assert a.macs == 11 * 11 * 3 * 96 * 55 * 55
    assert (z.overlap, a.overlap) == (5, 7)
    assert (z.nyquist, a.nyquist) == (0.25, 0.125)
    assert (z.alias_free_fraction, a.alias_free_fraction) == (0.5, 0.25)
    # 7x7 resolves 1/7, 2/7, 3/7 (2/7 and 3/7 exceed 1/4); 11x11 resolves 1/11..5/11 (all but 1/11 exceed 1/8)
    assert (z.filter_frequencies, z.aliased_frequencies) == (3, 2)
    assert (a.filter_frequencies, a.aliased_frequencies) == (5, 4)


def test_first_layer_needs_a_convolution():
    model = torch.nn.Module()
    model.features = torch.nn.Sequential(torch.nn.ReLU())
    with pytest.raises(ValueError, match="no Conv2d"):
        arch.first_layer(model)


def test_first_layer_table_lists_both_models(zf, alex):
    table = arch.first_layer_table([arch.first_layer(alex), arch.first_layer(zf)])
    assert "alexnet" in table.splitlines()[0] and "zfnet" in table.splitlines()[0]
    assert "4 of 5" in table and "2 of 3" in table and "170,755,200" in table


@pytest.mark.parametrize("frequency, stride, expected", [
    (0.1, 4, 0.1), (0.2, 4, 0.05), (0.3, 4, 0.05), (0.2, 2, 0.2), (0.3, 2, 0.2), (0.5, 2, 0.0), (0.24, 1, 0.24),
])
def test_aliased_frequency(frequency, stride, expected):
    assert arch.aliased_frequency(frequency, stride) == pytest.approx(expected)


def test_aliased_frequency_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        arch.aliased_frequency(0.1, 0)


@pytest.mark.parametrize("frequency", [0.07, 0.1, 0.2, 0.3, 0.4])
@pytest.mark.parametrize("kernel, stride", [(7, 2), (11, 4), (5, 1)])
def test_measured_grating_frequency_matches_the_sampling_theorem(frequency, kernel, stride):
    positions, response = arch.grating_response(frequency, kernel, stride)
    assert positions[1] - positions[0] == stride
    measured = arch.dominant_frequency(response, spacing=stride)
    assert measured == pytest.approx(arch.aliased_frequency(frequency, stride), abs=2e-3)


def test_grating_response_validates_frequency():
    with pytest.raises(ValueError, match="frequency"):
        arch.grating_response(0.7, 7, 2)


def test_dominant_frequency_of_a_pure_tone():
    x = torch.arange(200, dtype=torch.float64)
    assert arch.dominant_frequency(torch.sin(2 * torch.pi * 0.125 * x) + 3) == pytest.approx(0.125, abs=1e-3)


def test_alias_check_flags_frequencies_above_nyquist(zf, alex):
    rows = arch.alias_check([arch.first_layer(alex), arch.first_layer(zf)], [0.1, 0.2])
    assert [(r["model"], r["frequency"], r["aliased"]) for r in rows] == [
        ("alexnet", 0.1, False), ("zfnet", 0.1, False), ("alexnet", 0.2, True), ("zfnet", 0.2, False)]
    assert rows[2]["predicted"] == 0.05 and rows[2]["measured"] == pytest.approx(0.05, abs=1e-3)
    assert all(r["measured"] == pytest.approx(r["predicted"], abs=1e-3) for r in rows)


def test_summary_is_json_ready(zf):
    data = arch.summary(models.describe(zf))
    assert data["params"] == 62_357_608
    assert data["layers"]["conv5"]["rf"] == 139 and data["layers"]["pool5"]["output"] == [256, 6, 6]
    assert json.loads(json.dumps(data)) == data


def test_side_by_side_aligns_layers_and_totals():
    mini, alex_mini = models.describe(models.zfnet_mini()), models.describe(models.alexnet_mini())
    lines = arch.side_by_side({"ZF": mini, "Alex": alex_mini}).splitlines()
    assert lines[0].split()[:2] == ["layer", "ZF:"]
    assert [line.split()[0] for line in lines[2:]] == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4",
                                                        "conv5", "pool5", "fc6", "fc7", "fc8", "total"]
    conv1 = lines[2].split()
    assert conv1[1:3] == ["32x32x32", "832"] and conv1[5:7] == ["32x16x16", "1,600"]
    assert lines[-1].split() == ["total", "911,626", "12,096,512", "912,394", "11,678,720"]


def test_side_by_side_leaves_missing_layers_blank():
    full = models.describe(models.zfnet_mini())
    short = models.describe(models.variant(models.zfnet_mini(), remove=("conv3", "conv4")))
    row = next(line for line in arch.side_by_side({"full": full, "short": short}).splitlines() if line.startswith("conv3"))
    assert len(row.split()) == 5  # name + the four cells of the model that has it
