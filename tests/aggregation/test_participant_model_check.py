"""The Python participant checks every model it downloads, whoever serves it, before tf_keras reads it."""

from __future__ import annotations

import json

import pytest

from disco_client.keras import KerasFederatedClient
from disco_client.remote import ParticipantError
from tests.hostile_models import build_hostile_files


class _ServedBy(KerasFederatedClient):
    """A client whose server is a dictionary of paths, as a hostile server would answer."""

    files: dict[str, bytes]

    def _get(self, path: str) -> bytes:
        return self.files[path]


def _client(model_json: dict, shards: dict[str, bytes]) -> _ServedBy:
    client = _ServedBy(server="http://127.0.0.1:1", task_id="t")
    client.files = {"/tasks/t/versions/1/model.json": json.dumps(model_json).encode(),
                    **{f"/tasks/t/versions/1/{name}": data for name, data in shards.items()}}
    return client


def test_a_served_model_carrying_code_is_refused_and_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    case = build_hostile_files(tmp_path / "files", marker)["tfjs_nested_lambda"]
    document = json.loads(case.files["model.json"])
    client = _client(document, {k: v for k, v in case.files.items() if k != "model.json"})
    with pytest.raises(ParticipantError, match=r"Version 1 of task 't' was not loaded: .*Lambda \(layer 'innocent'"):
        client.load_keras_model(1)
    assert not marker.exists()


def test_a_served_weight_path_outside_the_folder_is_refused(tmp_path, tiny_artifacts):
    document = json.loads(tiny_artifacts.model_json_bytes())
    document["weightsManifest"][0]["paths"] = ["../../escaped.bin"]
    client = _client(document, {"../../escaped.bin": b"x"})
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    with pytest.raises(ParticipantError, match="is not a plain file name"):
        client.fetch_version(1, folder)
    assert not (tmp_path / "escaped.bin").exists()


def test_a_good_model_still_loads(tmp_path, tiny_artifacts):
    client = _client(json.loads(tiny_artifacts.model_json_bytes()), dict(tiny_artifacts.shards))
    model = client.load_keras_model(1)
    assert [list(t.shape) for t in model.inputs] == [[None, 4]]
