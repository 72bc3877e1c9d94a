from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sparseg.errors import InputError, OutputError
from sparseg.io import Geometry, read_geometry, read_image, read_mask, write_image, write_mask

OBLIQUE = Geometry(
    size_xyz=(7, 6, 5),
    spacing_xyz_mm=(0.8, 0.9, 4.5),
    origin_xyz_mm=(-90.0, 12.5, 30.0),
    direction=tuple(np.array([[0.96592583, -0.25881905, 0.0], [0.25881905, 0.96592583, 0.0], [0.0, 0.0, 1.0]]).ravel()),
)


def _image(array: np.ndarray, geometry: Geometry = OBLIQUE) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    geometry.apply_to(image)
    return image


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64"])
def test_any_numeric_pixel_type_reads_as_float32_zyx(tmp_path: Path, dtype: str) -> None:
    array = (np.arange(5 * 6 * 7).reshape(5, 6, 7) % 100).astype(dtype)
    path = tmp_path / "img.mha"
    sitk.WriteImage(_image(array), str(path))
    volume = read_image(path)
    assert volume.array.dtype == np.float32
    assert volume.array.shape == (5, 6, 7)
    np.testing.assert_array_equal(volume.array, array.astype(np.float32))
    assert volume.geometry == Geometry.of(_image(array))
    assert volume.geometry.spacing_mm == (4.5, 0.9, 0.8)


def test_geometry_survives_a_mask_round_trip(tmp_path: Path) -> None:
    mask = np.zeros(OBLIQUE.shape, dtype=bool)
    mask[2, 1:4, 2:5] = True
    path = write_mask(mask, OBLIQUE, tmp_path / "sub" / "mask.mha")
    read, geometry = read_mask(path)
    np.testing.assert_array_equal(read, mask)
    assert geometry.differences(OBLIQUE, tolerance=1e-9) == []
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkUInt8
    assert [p.name for p in path.parent.iterdir()] == ["mask.mha"]


def test_nifti_is_read_too(tmp_path: Path) -> None:
    array = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    path = tmp_path / "img.nii.gz"
    sitk.WriteImage(_image(array), str(path))
    np.testing.assert_allclose(read_image(path).array, array)


def test_non_finite_voxels_warn_with_count_and_become_zero(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    array = np.ones((5, 6, 7), dtype=np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    path = tmp_path / "nan.mha"
    sitk.WriteImage(_image(array), str(path))
    with caplog.at_level(logging.WARNING):
        volume = read_image(path)
    assert "4 non-finite voxels" in caplog.text
    assert np.isfinite(volume.array).all()
    assert volume.array[0, 0, 0] == 0 and volume.array[2, 2, 2] == 1


def _expect_input_error(path: Path, fragment: str, **kwargs) -> None:
    with pytest.raises(InputError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert "\n" not in message


def test_rejects_missing_file(tmp_path: Path) -> None:
    _expect_input_error(tmp_path / "absent.mha", "no such file")


def test_rejects_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mha"
    path.touch()
    _expect_input_error(path, "empty file")


def test_rejects_text_renamed_mha(tmp_path: Path) -> None:
    path = tmp_path / "notes.mha"
    path.write_text("these are not the pixels you are looking for\n")
    _expect_input_error(path, "not a readable image")


def test_rejects_truncated_pixel_data(tmp_path: Path) -> None:
    path = tmp_path / "full.mha"
    sitk.WriteImage(_image(np.ones((5, 6, 7), np.float32)), str(path), False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 50])
    _expect_input_error(path, "pixel data is cut short (790 bytes, the header needs 840)")


def test_rejects_2d_image(tmp_path: Path) -> None:
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image([8, 8], sitk.sitkFloat32), str(path))
    _expect_input_error(path, "2D")


def test_rejects_4d_image(tmp_path: Path) -> None:
    path = tmp_path / "time.mha"
    sitk.WriteImage(sitk.Image([4, 4, 3, 2], sitk.sitkFloat32), str(path))
    _expect_input_error(path, "4D")


def test_rejects_vector_pixels(tmp_path: Path) -> None:
    path = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 3], sitk.sitkVectorFloat32, 3), str(path))
    _expect_input_error(path, "3 components")


def test_rejects_volume_over_budget_from_header(tmp_path: Path) -> None:
    path = tmp_path / "big.mha"
    sitk.WriteImage(sitk.Image([10, 10, 10], sitk.sitkUInt8), str(path))
    _expect_input_error(path, "over the limit", max_voxels=999)
    assert read_image(path, max_voxels=1000).array.shape == (10, 10, 10)


def test_header_geometry_without_pixels(tmp_path: Path) -> None:
    path = tmp_path / "img.mha"
    sitk.WriteImage(_image(np.zeros((5, 6, 7), np.int16)), str(path))
    assert read_geometry(path) == OBLIQUE


def test_write_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_image(np.zeros((2, 2, 2), np.uint8), OBLIQUE, tmp_path / "x.mha")


def test_unwritable_output_is_a_clean_error_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError) as info:
        write_mask(np.zeros(OBLIQUE.shape, bool), OBLIQUE, blocker / "out" / "mask.mha")
    assert str(blocker) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("field, value", [("NDims", "999999999 2 2"), ("DimSize", "20 24"), ("DimSize", "20 -1 6"),
                                          ("ElementNumberOfChannels", "100000")])
def test_metaimage_headers_that_would_crash_itk_are_refused_first(tmp_path: Path, field: str, value: str) -> None:
    """A fuzzed NDims once aborted the whole process inside ITK's header parser."""
    path = tmp_path / "damaged.mha"
    sitk.WriteImage(_image(np.ones((6, 5, 4), np.float32)), str(path))
    data = path.read_bytes()
    end = data.index(b"ElementDataFile")
    header = re.sub(rf"^{field} = .*$", f"{field} = {value}", data[:end].decode(), flags=re.MULTILINE)
    if field not in header:
        header += f"{field} = {value}\n"
    path.write_bytes(header.encode() + data[end:])
    _expect_input_error(path, "not a readable image")


def test_geometry_from_array_order_is_the_one_axis_flip() -> None:
    geometry = Geometry.from_array_order((5, 6, 7), (4.5, 0.9, 0.8), OBLIQUE.origin_xyz_mm, OBLIQUE.direction)
    assert geometry == OBLIQUE
    assert geometry.shape == (5, 6, 7) and geometry.spacing_mm == (4.5, 0.9, 0.8)


def test_images_off_the_reference_grid_are_named_with_what_differs() -> None:
    from dataclasses import replace

    from sparseg.io import Volume, require_same_grid

    adc = Volume(np.zeros(OBLIQUE.shape, np.float32), OBLIQUE, Path("adc.mha"))
    same = Volume(adc.array, OBLIQUE, Path("z.mha"))
    require_same_grid(adc, same)
    moved = Volume(adc.array, replace(OBLIQUE, origin_xyz_mm=(0.0, 0.0, 0.0)), Path("label.mha"))
    with pytest.raises(InputError, match=r"^label.mha: grid differs from the ADC image adc.mha \(origin"):
        require_same_grid(adc, same, moved)


def test_outputs_are_readable_like_any_new_file_whoever_wrote_them(tmp_path: Path) -> None:
    import os

    from sparseg.io import atomic_path

    with atomic_path(tmp_path / "private.bin") as temporary:
        temporary.write_bytes(b"x")
        os.chmod(temporary, 0o600)  # as safetensors' writer leaves its files
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "private.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def _only_the_filler(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("size", [(3, 4, 5), (40, 128, 128)])
def test_a_full_disk_is_an_error_and_leaves_no_file(full_disk: Path, size: tuple[int, int, int]) -> None:
    """ITK does not report a full disk for a small file (a 0-byte mask stayed behind under its final name)."""
    geometry = Geometry.from_array_order(size, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    mask = np.random.default_rng(0).random(size) > 0.5
    with pytest.raises(OutputError, match=r"mask.mha: cannot write \("):
        write_mask(mask, geometry, full_disk / "mask.mha")
    assert _only_the_filler(full_disk) == ["filler"]


@pytest.mark.parametrize("kind", ["csv", "text", "png", "checkpoint"])
def test_every_kind_of_output_refuses_a_full_disk(full_disk: Path, kind: str) -> None:
    from sparseg.io import write_csv, write_text

    if kind == "csv":
        write = lambda path: write_csv(path, [{"case_id": "a", "dsc": 0.5}] * 200)  # noqa: E731
    elif kind == "text":
        write = lambda path: write_text(path, "{}\n" * 5000)  # noqa: E731
    elif kind == "png":
        from sparseg.plots import plot_overlay

        volume = np.ones((3, 16, 16), np.float32)
        write = lambda path: plot_overlay(volume, volume > 0, None, (1.0, 1.0, 1.0), "x", path)  # noqa: E731
    else:
        from sparseg.model import build_model, save_checkpoint

        from conftest import TINY_RUN

        model = build_model(TINY_RUN.model, TINY_RUN.in_channels)
        write = lambda path: save_checkpoint(path, model, TINY_RUN)  # noqa: E731
    with pytest.raises(OutputError, match="out.bin: cannot write"):
        write(full_disk / "out.bin")
    assert _only_the_filler(full_disk) == ["filler"]


def test_a_file_that_does_not_read_back_is_not_renamed_into_place(tmp_path: Path) -> None:
    from sparseg.io import IncompleteWrite, atomic_path

    def refuse(temporary: Path) -> None:
        raise IncompleteWrite("read back differs")

    with pytest.raises(OutputError, match=r"^.*out.txt: cannot write \(read back differs\)$"):
        with atomic_path(tmp_path / "out.txt", refuse) as temporary:
            temporary.write_text("something")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".MHA", ".NII.GZ"])
def test_suffixes_in_capitals_are_read_and_written(tmp_path: Path, suffix: str) -> None:
    mask = np.zeros(OBLIQUE.shape, bool)
    mask[1, 2, 3] = True
    path = write_mask(mask, OBLIQUE, tmp_path / f"mask{suffix}")
    read, geometry = read_mask(path)
    np.testing.assert_array_equal(read, mask)
    assert geometry.differences(OBLIQUE, tolerance=1e-5) == []


def test_a_damaged_nifti_gzip_stream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "img.nii.gz"
    volume = np.round(np.random.default_rng(0).random((20, 64, 64)) * 4).astype(np.float32)
    sitk.WriteImage(_image(volume, Geometry.from_array_order(volume.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                             OBLIQUE.direction)), str(path))
    data = bytearray(path.read_bytes())
    middle = len(data) * 2 // 3  # well into the pixel data's deflate stream
    data[middle : middle + 8] = bytes(range(1, 9))
    path.write_bytes(bytes(data))
    _expect_input_error(path, "compressed data is damaged")


def test_a_file_name_that_is_not_utf8_is_refused_before_itk_sees_it(tmp_path: Path) -> None:
    import os

    path = tmp_path / os.fsdecode(b"adc_\xff.mha")
    sitk.WriteImage(_image(np.ones((5, 6, 7), np.float32)), str(tmp_path / "adc.mha"))
    (tmp_path / "adc.mha").rename(path)
    with pytest.raises(InputError, match=r"adc_\\udcff.mha: the file name is not valid UTF-8; rename the file$"):
        read_image(path)
    with pytest.raises(InputError, match="not valid UTF-8"):
        write_mask(np.zeros(OBLIQUE.shape, bool), OBLIQUE, tmp_path / os.fsdecode(b"mask_\xff.mha"))


def _compressed_mha(tmp_path: Path) -> Path:
    path = tmp_path / "adc.mha"
    volume = np.round(np.random.default_rng(1).random((8, 20, 24)) * 3).astype(np.float32)
    sitk.WriteImage(_image(volume, Geometry.from_array_order(volume.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                             OBLIQUE.direction)), str(path), True)
    return path


def test_a_compressed_data_size_that_does_not_match_the_stream_is_refused(tmp_path: Path) -> None:
    """ITK decodes only CompressedDataSize bytes and fills the rest with zeros, with exit 0."""
    path = _compressed_mha(tmp_path)
    data = path.read_bytes()
    size = int(re.search(rb"CompressedDataSize = (\d+)", data)[1])
    path.write_bytes(data.replace(b"CompressedDataSize = %d" % size, b"CompressedDataSize = %d" % (size // 2)))
    _expect_input_error(path, "CompressedDataSize")


def test_bytes_after_the_compressed_stream_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _compressed_mha(tmp_path)
    expected = read_image(path).array
    path.write_bytes(path.read_bytes() + bytes(800))
    np.testing.assert_array_equal(read_image(path).array, expected)
    assert any("800 bytes after the compressed pixel data ignored" in r.getMessage() for r in caplog.records)


def _nifti_payload(tmp_path: Path) -> tuple[Path, bytes]:
    import gzip

    path = tmp_path / "adc.nii.gz"
    sitk.WriteImage(_image(np.ones((8, 20, 24), np.float32)), str(path))
    return path, gzip.decompress(path.read_bytes())


def test_a_nifti_shorter_than_its_header_says_is_refused(tmp_path: Path) -> None:
    import gzip

    path, raw = _nifti_payload(tmp_path)
    path.write_bytes(gzip.compress(raw[:-2000]))  # a valid gzip stream of too little data
    _expect_input_error(path, "pixel data is cut short")


@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf"), -1.0])
def test_a_nifti_pixdim_that_is_not_a_positive_number_is_refused(tmp_path: Path, value: float) -> None:
    import gzip
    import struct

    path, raw = _nifti_payload(tmp_path)
    path.write_bytes(gzip.compress(raw[:80] + struct.pack("<f", value) + raw[84:]))  # pixdim[1], the x spacing
    _expect_input_error(path, "must be a positive number")


def test_a_direction_matrix_that_is_not_orthonormal_is_warned_about(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = _compressed_mha(tmp_path)
    data = path.read_bytes()
    path.write_bytes(re.sub(rb"TransformMatrix = [^\n]*", b"TransformMatrix = 1 0.5 0 0 1 0 0 0 1", data))
    read_image(path)
    assert any("not orthonormal" in r.getMessage() for r in caplog.records)


def _written(tmp_path: Path, name: str, compress: bool = False) -> tuple[Path, np.ndarray]:
    """A 4x5x6 int16 volume written as `name` (its format by suffix); the path and the array."""
    array = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 50).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 3.0))
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp_path / name))
    writer.SetUseCompression(compress)
    writer.Execute(image)
    return tmp_path / name, array


def _header_and_data(path: Path, separator: bytes) -> tuple[bytes, bytes]:
    head, data = path.read_bytes().split(separator, 1)
    return head + separator, data


def test_metaimage_headers_that_agree_with_their_data_are_read(tmp_path: Path) -> None:
    """Valid headers once refused: a lower-case LOCAL, a Comment naming ElementDataFile, a LIST of slice files."""
    path, array = _written(tmp_path, "a.mha")
    head, data = _header_and_data(path, b"ElementDataFile = LOCAL\n")
    (tmp_path / "local.mha").write_bytes(b"Comment = see ElementDataFile\n" + head.replace(b"LOCAL", b"local") + data)
    np.testing.assert_array_equal(read_image(tmp_path / "local.mha").array, array)
    slices = [f"s{k}.raw" for k in range(4)]
    for k, name in enumerate(slices):
        (tmp_path / name).write_bytes(array[k].tobytes())
    (tmp_path / "list.mhd").write_bytes(head.replace(b"ElementDataFile = LOCAL\n", b"ElementDataFile = LIST 2D\n")
                                        + "\n".join(slices).encode() + b"\n")
    np.testing.assert_array_equal(read_image(tmp_path / "list.mhd").array, array)


@pytest.mark.parametrize("damage, fragment", [
    ("header size", "pixel data is cut short"),  # HeaderSize 10 with no 10 bytes to skip
    ("list short", "names 3 data files for 4 slices"),
    ("list slice long", "s1.raw: pixel data is longer than its header says"),
])
def test_metaimage_headers_that_disagree_with_their_data_are_refused(tmp_path: Path, damage: str,
                                                                     fragment: str) -> None:
    path, array = _written(tmp_path, "a.mha")
    head, data = _header_and_data(path, b"ElementDataFile = LOCAL\n")
    if damage == "header size":
        target = tmp_path / "hs.mha"
        target.write_bytes(head.replace(b"ElementDataFile", b"HeaderSize = 10\nElementDataFile") + data)
    else:
        names = [f"s{k}.raw" for k in range(4 if damage == "list slice long" else 3)]
        for k, name in enumerate(names):
            (tmp_path / name).write_bytes(array[k].tobytes() + (b"\0\0" if k == 1 and damage != "list short" else b""))
        target = tmp_path / "list.mhd"
        target.write_bytes(head.replace(b"ElementDataFile = LOCAL\n", b"ElementDataFile = LIST\n")
                           + "\n".join(names).encode() + b"\n")
    if damage == "list slice long":  # the error names the slice file it is about
        with pytest.raises(InputError, match=fragment):
            read_image(target)
    else:
        _expect_input_error(target, fragment)


def test_nifti_bitpix_must_be_its_datatype_s(tmp_path: Path) -> None:
    import struct

    path, _ = _written(tmp_path, "a.nii")
    data = bytearray(path.read_bytes())
    data[72:74] = struct.pack("<h", 32)  # bitpix 32 for int16 data: ITK reads by datatype
    path.write_bytes(bytes(data))
    _expect_input_error(path, "NIfTI bitpix 32 disagrees with its datatype 4 (16 bits)")


def test_a_nifti_2_file_is_one_line_before_itk_prints_its_own(tmp_path: Path, capfd) -> None:
    import nibabel

    nibabel.save(nibabel.Nifti2Image(np.ones((4, 5, 6), np.float32), np.eye(4)), str(tmp_path / "n2.nii"))
    _expect_input_error(tmp_path / "n2.nii", "a NIfTI-2 file, which the image reader (ITK) cannot read")
    assert capfd.readouterr().err == ""


def test_nrrd_data_is_checked_after_its_skips_and_across_gzip_members(tmp_path: Path) -> None:
    import gzip

    path, array = _written(tmp_path, "a.nrrd")
    head, data = _header_and_data(path, b"\n\n")
    skipped = tmp_path / "skip.nrrd"
    skipped.write_bytes(head[:-1] + b"byte skip: 10\n\n" + b"J" * 10 + data)
    np.testing.assert_array_equal(read_image(skipped).array, array)
    skipped.write_bytes(head[:-1] + b"byte skip: 10\n\n" + b"J" * 10 + data + b"\0" * 6)
    _expect_input_error(skipped, "holds 246 bytes of pixel data, its header says 240")
    members = tmp_path / "members.nrrd"
    members.write_bytes(head.replace(b"encoding: raw", b"encoding: gzip") + gzip.compress(data[:100])
                        + gzip.compress(data[100:]))
    np.testing.assert_array_equal(read_image(members).array, array)
