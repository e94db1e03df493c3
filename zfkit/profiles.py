"""The three run profiles (DESIGN §5): one place that decides data, model and budget.

``ci`` keeps every notebook under a minute on 2 CPU cores, ``book`` (the default) is what the
published book shows, ``paper`` is the ECCV recipe on ImageNet for GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Profile", "get", "NAMES", "BOOK_RECIPE", "TRAIN_COST_CPU", "HEADLESS_ENV"]

#: Set (non-empty) for the kernels ``make book`` starts: no browser shows them, and what they display is
#: stored, so explorers show their note instead of controls and training is not announced.
HEADLESS_ENV = "ZFKIT_HEADLESS"

#: Where the profiles' ``train_cost`` was measured (2 threads, bf16 autocast, from the zoo's run.json records).
TRAIN_COST_CPU = "a 2-core AMD EPYC"


@dataclass(frozen=True)
class Profile:
    """Data, model and budget for one kind of run."""

    name: str
    dataset: str  # "fashion-mnist" or "imagenet"
    model: str  # zfkit.models constructor name
    input_size: int
    in_channels: int
    num_classes: int
    width: float  # conv width multiplier of the mini models (1.0 = as documented)
    epochs: int
    batch_size: int
    train_subset: int | None  # None = the full training split
    test_subset: int | None
    seed: int
    device: str = "auto"
    notes: str = ""
    # Recipe fields for the profile's own full-length runs (the zoo's main models, the train CLI);
    # runs on a shorter budget keep the Recipe defaults.
    recipe: dict = field(default_factory=dict)
    # Measured training cost of the zoo's zfnet-mini, in CPU-thread seconds per 1,000 training images
    # and epoch (validation included): zfkit.zoo scales it to a run's images, epochs and threads to
    # say how long a model it must train will take. None: never trained implicitly (paper).
    train_cost: float | None = None


#: How the book's main networks reach their accuracy in 12 CPU-minutes (16 epochs; measured by
#: benchmarks/recipe_study.py, discussed in the training chapter): flips but no shifts (shifting
#: slows a 16-epoch run more than it helps), no feature-scale clipping (its radius is set for
#: [-128, 128] inputs, ours are [0, 1]), a plateau patience of 2 (the validation error is noisy),
#: the last 4 epochs annealed by 10 at least, and bf16 autocast where the CPU has bf16 units
#: (``precision="auto"``: see :func:`zfkit.train.cpu_has_fast_bf16`), fp32 elsewhere.
BOOK_RECIPE = {"augment": True, "max_shift": 0, "feature_scale_clipping": False, "plateau_patience": 2,
               "final_anneal_epochs": 4, "precision": "auto"}

_PROFILES = {
    "ci": Profile(
        name="ci", dataset="fashion-mnist", model="zfnet_mini", input_size=32, in_channels=1, num_classes=10,
        width=0.5, epochs=2, batch_size=128, train_subset=2000, test_subset=500, seed=0,
        notes="tiny deterministic subsets and a half-width ZFNet-mini: proves the code paths, not the science",
        train_cost=0.46,  # 0.92 s for 2,000 images x 2 epochs on 2 threads of TRAIN_COST_CPU
    ),
    "book": Profile(
        name="book", dataset="fashion-mnist", model="zfnet_mini", input_size=32, in_channels=1, num_classes=10,
        width=1.0, epochs=16, batch_size=128, train_subset=None, test_subset=None, seed=0,
        notes="Fashion-MNIST 60k/10k padded to 32x32, ZFNet-mini; what the published book shows",
        recipe=BOOK_RECIPE,
        train_cost=1.41,  # 10.3 min for 55,000 images x 16 epochs on 2 threads of TRAIN_COST_CPU
    ),
    "paper": Profile(
        name="paper", dataset="imagenet", model="zfnet", input_size=224, in_channels=3, num_classes=1000,
        width=1.0, epochs=70, batch_size=128, train_subset=None, test_subset=None, seed=0,
        notes="ImageNet 2012 folder ($ZFKIT_IMAGENET), ZFNet Fig. 3 at 224x224; GPUs (CPU works, slowly), "
              "torchrun DDP, days",
    ),
}
NAMES = tuple(_PROFILES)


def get(name: str) -> Profile:
    """The profile called ``name`` (``ci``, ``book`` or ``paper``)."""
    if isinstance(name, Profile):
        return name
    try:
        return _PROFILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(NAMES)} "
                         "(set ZFKIT_PROFILE or pass -p profile NAME to papermill)") from None
