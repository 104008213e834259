"""Inspecting uploaded model files: every accepted format, and a specific message for each broken one."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from tasks.model_files.archives import SafeZip
from tasks.model_files.errors import UploadError
from tasks.model_fit import check_model_fits_task
from tasks.tfjs_format import GRAPH_MODEL_HELP, parse_layers_model
from tasks.uploads import InspectedUpload, inspect_model_upload, sniff
from tests import model_files as mf


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Real files of every upload format, made once for the module."""
    tmp = tmp_path_factory.mktemp("uploads")
    k2_dense, k2_conv, k2_lambda = mf.keras2_model("dense"), mf.keras2_model("conv"), mf.keras2_model("lambda")
    k3_dense, k3_multi = mf.keras3_model("dense"), mf.keras3_model("multi_input")
    return {
        "tfjs_dense": mf.tfjs_files(k2_dense),
        "tfjs_conv": mf.tfjs_files(k2_conv),
        "k2_h5": mf.save_keras2(k2_dense, "h5", tmp / "k2h5"),
        "k2_keras": mf.save_keras2(k2_conv, "keras", tmp / "k2keras"),
        "k2_saved_model": mf.save_keras2(k2_dense, "saved_model", tmp / "k2sm"),
        "k2_lambda_h5": mf.save_keras2(k2_lambda, "h5", tmp / "k2lambda"),
        "k3_h5": mf.save_keras3(k3_dense, "h5", tmp / "k3h5"),
        "k3_keras": mf.save_keras3(k3_multi, "keras", tmp / "k3keras"),
        "k3_export": mf.save_keras3(k3_dense, "export", tmp / "k3export"),
    }


def only(files: dict[str, bytes]) -> bytes:
    (data,) = files.values()
    return data


def problems_of(files: dict[str, bytes], **kwargs) -> str:
    with pytest.raises(UploadError) as caught:
        inspect_model_upload(files, **kwargs)
    assert caught.value.problems, "an UploadError always says why"
    return " ".join(caught.value.problems)


# --- Good uploads ---------------------------------------------------------------------------------------------------

def test_tfjs_model_json_with_its_shards_is_ready_to_store(uploads):
    result = inspect_model_upload(uploads["tfjs_dense"])
    assert isinstance(result, InspectedUpload)
    assert (result.kind, result.source_bytes, result.needs_conversion) == ("tfjs", None, False)
    assert result.artifacts.parameter_count == 4 * 6 + 6 + 6 * 3 + 3
    assert list(result.artifacts.shards) == ["group1-shard1of1.bin"]


def test_tfjs_files_in_a_zip_even_inside_a_folder(uploads):
    flat = inspect_model_upload({"whatever.zip": mf.zip_bytes(uploads["tfjs_conv"])})
    nested = inspect_model_upload({"m.zip": mf.zip_bytes({f"export/{n}": d for n, d in uploads["tfjs_conv"].items()})})
    assert flat.kind == nested.kind == "tfjs"
    assert flat.artifacts.sha256() == nested.artifacts.sha256()


def test_names_and_extensions_are_not_trusted_the_content_is(uploads):
    renamed = {"photo.jpg": uploads["tfjs_dense"]["model.json"], "x.bin": uploads["tfjs_dense"]["group1-shard1of1.bin"]}
    message = problems_of(renamed)  # the JSON is found by content; the shard must carry the manifest's name
    assert "names weight file 'group1-shard1of1.bin', which was not provided" in message
    assert "Files not named in model.json's weightsManifest: x.bin" in message
    h5_named_keras = inspect_model_upload({"model.keras": only(uploads["k2_h5"])})
    keras_named_h5 = inspect_model_upload({"model.h5": only(uploads["k3_keras"])})
    assert (h5_named_keras.kind, h5_named_keras.source_name) == ("keras_h5", "model.h5")
    assert (keras_named_h5.kind, keras_named_h5.source_name) == ("keras_v3", "model.keras")


@pytest.mark.parametrize(("name", "kind", "source_name", "keras"), [
    ("k2_h5", "keras_h5", "model.h5", "2"),
    ("k3_h5", "keras_h5", "model.h5", "3"),
    ("k2_keras", "keras_v3", "model.keras", "2"),
    ("k3_keras", "keras_v3", "model.keras", "3"),
    ("k2_saved_model", "saved_model", "saved_model.zip", "2"),
])
def test_keras_files_are_recognised_for_conversion(uploads, name, kind, source_name, keras):
    result = inspect_model_upload(uploads[name])
    assert (result.kind, result.source_name, result.keras_version) == (kind, source_name, keras)
    assert result.artifacts is None and result.needs_conversion
    assert result.source_bytes == only(uploads[name])


def test_an_architecture_only_model_json_needs_random_initialisation_allowed(uploads):
    model_json = uploads["tfjs_dense"]["model.json"]
    message = problems_of({"model.json": model_json})
    assert "came without its weight files (group1-shard1of1.bin)" in message
    assert "allow random initialisation" in message
    result = inspect_model_upload({"model.json": model_json}, allow_random_init=True)
    assert (result.kind, result.source_name, result.source_bytes) == ("tfjs_architecture", "model.json", model_json)


# --- Broken uploads, each with its own message ------------------------------------------------------------------------

def test_a_graph_model_is_refused_with_the_converter_command():
    graph = json.dumps({"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": []}).encode()
    message = problems_of({"model.json": graph, "group1-shard1of1.bin": b"\0" * 8})
    assert GRAPH_MODEL_HELP in message and "tensorflowjs_converter --input_format=keras" in message


def test_a_truncated_shard_is_refused(uploads):
    files = dict(uploads["tfjs_dense"])
    files["group1-shard1of1.bin"] = files["group1-shard1of1.bin"][:-8]
    assert "truncated or belong to another model" in problems_of(files)


def test_a_truncated_h5_file_is_refused(uploads):
    data = only(uploads["k2_h5"])
    assert "This .h5 file is damaged or truncated" in problems_of({"model.h5": data[: len(data) // 2]})


def test_a_truncated_zip_is_refused(uploads):
    data = only(uploads["k3_keras"])
    assert "The zip file is damaged or truncated" in problems_of({"model.keras": data[: len(data) // 2]})


def test_a_keras_file_with_a_garbage_config_is_refused(uploads):
    with zipfile.ZipFile(io.BytesIO(only(uploads["k3_keras"]))) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["config.json"] = b"{this is not json"
    message = problems_of({"model.keras": mf.zip_bytes(members)})
    assert "config.json is not a Keras model configuration" in message


def test_an_hdf5_file_that_is_not_a_keras_model_is_refused(tmp_path: Path):
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as h5:
        h5["measurements"] = [1.0, 2.0, 3.0]
    message = problems_of({"data.h5": (tmp_path / "data.h5").read_bytes()})
    assert "This HDF5 file is not a Keras model" in message and "model.save('model.h5')" in message


def test_weights_only_h5_is_explained(tmp_path: Path):
    model = mf.keras2_model("dense")
    model.save_weights(tmp_path / "w.h5")
    assert "holds only weights (saved with save_weights)" in problems_of({"w.h5": (tmp_path / "w.h5").read_bytes()})


def test_a_keras3_export_is_refused_with_what_to_upload_instead(uploads):
    message = problems_of(uploads["k3_export"])
    assert "no Keras metadata (keras_metadata.pb)" in message and "model.save('model.keras')" in message


def test_a_lambda_layer_is_refused_with_its_name(uploads):
    message = problems_of(uploads["k2_lambda_h5"])
    assert "The model uses layers TF.js cannot train: Lambda (layer 'doubling', at" in message


@pytest.mark.parametrize("member", ["../evil.json", "/etc/evil.json", "a/../../evil.json", "C:/evil.json"])
def test_zip_slip_members_are_refused(uploads, member):
    files = {**uploads["tfjs_dense"], member: b"{}"}
    assert "unsafe path" in problems_of({"m.zip": mf.zip_bytes(files)})


def test_a_symlink_member_is_refused(uploads):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in uploads["tfjs_dense"].items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("link.bin")
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    assert "symbolic link ('link.bin')" in problems_of({"m.zip": buffer.getvalue()})


def test_a_zip_bomb_is_refused_from_its_directory():
    bomb = mf.zip_bytes({"model.json": b"{}", "zeros.bin": b"\0" * (5 * 1024 * 1024)})
    assert len(bomb) < 20_000  # about 1000:1
    assert "looks like a zip bomb" in problems_of({"bomb.zip": bomb})


def test_reading_stops_at_the_limit_even_if_the_directory_passed(settings):
    data = mf.zip_bytes({"a.bin": bytes(range(256)) * 64})
    archive = SafeZip(data, limit=200 * 1024 * 1024)
    archive.limit = 1000  # as if the directory had under-declared the sizes
    with pytest.raises(UploadError, match="refused as a zip bomb"):
        archive.read("a.bin")


def test_too_many_zip_members_are_refused():
    many = mf.zip_bytes({f"f{i}.bin": b"x" for i in range(1001)})
    assert "holds 1001 files; at most 1000" in problems_of({"many.zip": many})


def test_an_upload_over_the_size_limit_is_refused(uploads, settings):
    settings.DISCO_MAX_MODEL_BYTES = 1000
    assert "more than this platform's limit of 1,000 bytes (setting DISCO_MAX_MODEL_BYTES)" in problems_of(
        uploads["k2_h5"])


def test_a_zip_unpacking_over_the_size_limit_is_refused(settings):
    import numpy as np

    payload = np.random.default_rng(0).integers(0, 4, 100_000, dtype=np.uint8).tobytes()  # about 4:1
    data = mf.zip_bytes({"model.json": b"{}", "group1-shard1of1.bin": payload})
    settings.DISCO_MAX_MODEL_BYTES = 50_000
    assert len(data) < 50_000
    assert "The zip file unpacks to 100,002 bytes, more than this platform's limit of 50,000 bytes" in problems_of(
        {"m.zip": data})


@pytest.mark.parametrize(("content", "expected"), [
    (b"https://example.org/models/model.json\n", "does not download models from the internet"),
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "is a web page (HTML)"),
    (b"\x00\x01\x02 random bytes", "Accepted model uploads"),
    (b"", "is empty (0 bytes)"),
])
def test_urls_web_pages_and_unknown_files_get_a_clear_message(content, expected):
    assert expected in problems_of({"thing.bin": content})


def test_no_files_and_mixed_uploads_are_refused(uploads):
    assert "No model file was uploaded" in problems_of({})
    assert "on its own" in problems_of({**uploads["tfjs_dense"], **uploads["k2_h5"]})
    two_jsons = {"a.json": b"{}", "b.json": b"{}"}
    assert "2 of them is a model.json" in problems_of(two_jsons)


def test_sniffing():
    assert sniff(b"\x89HDF\r\n\x1a\nrest") == "hdf5"
    assert sniff(b"PK\x03\x04rest") == "zip"
    assert sniff(b'\xef\xbb\xbf {"a": 1}') == "json"
    assert sniff(b"  http://x") == "url"
    assert sniff(b"<html>") == "html"


# --- Does the model fit the task? -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conv_artifacts(uploads):
    files = uploads["tfjs_conv"]
    return parse_layers_model(files["model.json"], {k: v for k, v in files.items() if k != "model.json"})


@pytest.fixture(scope="module")
def dense_artifacts(uploads):
    files = uploads["tfjs_dense"]
    return parse_layers_model(files["model.json"], {k: v for k, v in files.items() if k != "model.json"})


IMAGE = {"data_type": "image", "image_height": 8, "image_width": 8, "image_channels": 3, "labels": ["cat", "dog"]}


def test_a_fitting_image_model_has_no_problems(conv_artifacts):
    assert check_model_fits_task(conv_artifacts, IMAGE) == []
    assert check_model_fits_task(conv_artifacts, {**IMAGE, "image_channels": None}) == []


def test_image_size_and_channels_mismatches_are_named(conv_artifacts):
    problems = check_model_fits_task(conv_artifacts, {**IMAGE, "image_height": 28, "image_width": 32,
                                                      "image_channels": 1})
    assert problems == [
        "The model's input image height is 8, but the task's image height is 28 (model input [None, 8, 8, 3]).",
        "The model's input image width is 8, but the task's image width is 32 (model input [None, 8, 8, 3]).",
        "The model takes images with 3 channel(s), but the task says 1 (model input [None, 8, 8, 3]).",
    ]


def test_wrong_output_units_say_expected_and_found(conv_artifacts, dense_artifacts):
    (problem,) = check_model_fits_task(conv_artifacts, {**IMAGE, "labels": ["a", "b", "c"]})
    assert re.fullmatch(r"The model's output \(layer 'activation(_\d+)?', shape \[None, 2\]\) has 2 units, but the "
                        r"task has 3 labels \(a, b, c\): it needs 3 units\.", problem)
    (problem,) = check_model_fits_task(dense_artifacts, {"data_type": "tabular", "input_columns": list("abcd"),
                                                         "labels": ["no", "yes"]})
    assert "has 3 units, but the task has 2 labels (no, yes): it needs 2 units (or 1 unit with a sigmoid" in problem


def test_tabular_columns_must_match_the_input_size(dense_artifacts):
    assert check_model_fits_task(dense_artifacts, {"data_type": "tabular", "input_columns": list("abcd")}) == []
    (problem,) = check_model_fits_task(dense_artifacts, {"data_type": "tabular", "input_columns": list("abc")})
    assert problem.startswith("The model expects 4 input values per row (input shape [None, 4]), but the task has "
                              "3 input columns (a, b, c).")


def test_an_image_task_refuses_a_flat_model(dense_artifacts):
    (problem,) = check_model_fits_task(dense_artifacts, {**IMAGE, "labels": []})
    assert "needs a model whose input is [None, height, width, channels]; this model's input is [None, 4]" in problem


def test_one_sigmoid_unit_fits_two_labels_and_text_length_is_checked(tiny_artifacts):
    import copy

    model_json = copy.deepcopy(tiny_artifacts.model_json)
    last = model_json["modelTopology"]["model_config"]["config"]["layers"][-1]["config"]
    last["activation"] = "sigmoid"
    last["units"] = 1
    from tasks.tfjs_format import LayersModelArtifacts

    sigmoid = LayersModelArtifacts(model_json=model_json, shards={}, weights=())
    assert check_model_fits_task(sigmoid, {"data_type": "tabular", "labels": ["no", "yes"]}) == []
    (problem,) = check_model_fits_task(tiny_artifacts, {"data_type": "text", "max_sequence_length": 128})
    assert "does not take sequences of 128 tokens" in problem and "[None, 128]" in problem


def test_corrupted_compressed_data_is_refused_when_read(uploads):
    data = bytearray(mf.zip_bytes(uploads["tfjs_conv"]))
    start = data.index(b"group1-shard1of1.bin") + 40  # inside that member's deflated bytes
    data[start:start + 200] = bytes(200)
    assert "damaged or truncated" in problems_of({"m.zip": bytes(data)})
