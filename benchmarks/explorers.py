"""Explorer redraw times in the ``book`` profile (issue #16: a map change <= 1 s; a layer's first top-k
scan may take longer, then it is cached).

A redraw here is what the kernel does when a control moves: recompute, draw the figure and encode
it as the PNG the browser receives. The browser test (tests/test_lab_browser.py) times the same in
JupyterLab on the ``ci`` profile, control moved to new image shown. Uses the book's trained
ZFNet-mini (``zoo.load``: cached after ``make book``, trained first otherwise). Prints a table
naming the CPU; asserts nothing.
"""

from __future__ import annotations

import io
import time

import torch

from zfkit import data, widgets, zoo
from zfkit.train import cpu_name


def redraw(explorer: widgets.Explorer, **changes) -> float:
    """Seconds for one redraw after ``changes`` (control name -> value), PNG encoding included."""
    start = time.perf_counter()
    with explorer.hold():
        for name, value in changes.items():
            explorer.controls[name].value = value
    figure = explorer.redraw()
    figure.savefig(io.BytesIO(), format="png")
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    model = zoo.load("zfnet-mini", "book").eval()
    test = data.fashion_mnist("test")
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads; profile book, ZFNet-mini, {len(test)} test images\n")
    rows = []
    layers = widgets.LayerExplorer(model, test, layers=["conv1", "conv2", "conv3", "conv4", "conv5"], layer="conv3")
    rows.append(("layer explorer", "first scan of conv3 + draw", redraw(layers)))
    for channel in (5, 17, 40):
        rows.append(("layer explorer", f"map change -> {channel}", redraw(layers, channel=channel)))
    rows.append(("layer explorer", "first scan of conv5 + draw", redraw(layers, layer="conv5")))
    rows.append(("layer explorer", "back to conv3 (scan cached)", redraw(layers, layer="conv3")))
    rows.append(("layer explorer", "map change -> 3", redraw(layers, channel=3)))
    occluder = widgets.OcclusionExplorer(model, test, index=0)
    rows.append(("occlusion explorer", "first sweep", redraw(occluder)))
    rows.append(("occlusion explorer", "image change -> 7", redraw(occluder, index=7)))
    field = widgets.ReceptiveFieldExplorer(model, test.images[0])
    rows.append(("receptive field", "unit change", redraw(field, y=2, x=3)))
    for explorer, change, seconds in rows:
        print(f"{explorer:20} {change:30} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
