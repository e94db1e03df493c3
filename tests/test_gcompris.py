"""The GCompris photo set against upstream's own READMEs in Debian gcompris-qt-data."""

import pytest
import torch

from zfkit import data
from zfkit.gcompris import CATEGORIZATION, credits, unlabelled_photos

pytestmark = pytest.mark.skipif(not CATEGORIZATION.is_file(), reason="Debian gcompris-qt-data is not installed (make setup)")
TOOLS = "gcompris/src/activities/categorization/resource/images/tools/"


def test_credits_come_from_the_readme_beside_the_file():
    assert credits(TOOLS + "hammer2.webp") == {
        "Copyright": "Junior Libby", "License": "CC0-1.0",
        "Source": "https://publicdomainpictures.net/en/view-image.php?image=25081&picture=hammer"}
    with pytest.raises(KeyError, match="names no file 'screwDriver.webp'"):  # upstream's README misspells it
        credits(TOOLS + "screwDriver.webp")


def test_the_photos_are_every_credited_photograph_of_the_chosen_folders():
    every = data.unlabelled_photos()
    assert len(every) == 139 and every.images.shape == (139, 3, 224, 224)  # 140 files, one without a stated licence
    assert set(every.folders) == {"fishes", "monuments", "others", "renewable", "tools"}
    assert "screwDriver.webp" not in every.names and "hammer2.webp" in every.names
    assert all(every.licences) and all(every.authors) and (every.targets == -1).all()
    pixels = every.display()
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.std() > 0.1
    others = data.unlabelled_photos(("others",))
    assert others.folders == ("others",) * len(others) and len(others) == 17
    assert torch.equal(others.images, every.images[[i for i, f in enumerate(every.folders) if f == "others"]])


def test_bad_folders_and_a_missing_package_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown folder"):
        data.unlabelled_photos(("alphabets",))
    with pytest.raises(data.DataNotFoundError, match="apt-get install gcompris-qt-data"):
        data.unlabelled_photos(resource=tmp_path / "categorization.rcc")
