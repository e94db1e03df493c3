"""The Qt resource reader against Debian gcompris-qt-data's categorization.rcc: upstream's own READMEs list
the files each folder holds, and every listed file must come out as a decodable image."""

import io
from pathlib import Path

import pytest
from PIL import Image

from zfkit.qt_resource import members, read_member

RCC = Path("/usr/share/gcompris-qt/rcc/categorization.rcc")
TOOLS = "gcompris/src/activities/categorization/resource/images/tools/"
pytestmark = pytest.mark.skipif(not RCC.is_file(), reason="Debian gcompris-qt-data is not installed (make setup)")


def _listed_in(readme: str) -> set[str]:
    names = set()
    for block in readme.split("\n\n"):
        if "Files:" in block:
            names |= set(block.split("Files:", 1)[1].split())
    return names


def test_every_file_a_readme_lists_is_in_the_resource_and_decodes():
    inside = set(members(RCC))
    readme = read_member(RCC, TOOLS + "README").decode("utf8")  # text: stored zlib-compressed by rcc
    listed = _listed_in(readme)
    assert len(listed) >= 30 and "hammer2.webp" in listed
    found = {name for name in listed if TOOLS + name in inside}
    assert listed - found == {"screDriver.webp"}  # upstream's README misspells screwDriver.webp
    for name in found:
        with Image.open(io.BytesIO(read_member(RCC, TOOLS + name))) as im:
            assert im.format == "WEBP" and min(im.size) >= 100


def test_a_missing_member_and_a_file_that_is_no_resource_are_named(tmp_path):
    with pytest.raises(KeyError, match="holds no file 'nope.webp'"):
        read_member(RCC, "nope.webp")
    fake = tmp_path / "fake.rcc"
    fake.write_bytes(b"PK\x03\x04 not a resource")
    with pytest.raises(ValueError, match="not a compiled Qt resource"):
        members(fake)
