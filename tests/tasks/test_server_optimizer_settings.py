"""A task's server optimizer through the form and the API: stored as given, refused with the registry's words."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from tasks.models import Task
from tests.tasks.test_api_create import DISCO_TASK, multipart
from tests.tasks.test_contributor_views import FORM, field_errors, model_uploads

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("alice", password="pw-alice-123"))
    return client


@pytest.fixture
def token_client(django_user_model) -> Client:
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("tina", password="pw-tina-123")
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def test_the_form_stores_fedadam_with_its_own_fields(alice_client, tiny_artifacts):
    data = {**FORM, "server_optimizer": "fedadam", "opt_fedadam_lr": "0.02", "opt_beta1": "0.8",
            "opt_beta2": "0.95", "opt_epsilon": "0.005", "opt_fedavgm_lr": "3", "opt_momentum": "0.5",
            "model_files": model_uploads(tiny_artifacts)}
    response = alice_client.post("/tasks/new/", data)
    assert response.status_code == 302, field_errors(response.content.decode(), "server_optimizer")
    task = Task.objects.get(pk="heart")
    assert task.server_optimizer == "fedadam"
    assert task.server_optimizer_params == {"lr": 0.02, "beta1": 0.8, "beta2": 0.95, "epsilon": 0.005}
    # The edit page shows them again, each in its field.
    html = alice_client.get("/tasks/heart/edit/").content.decode()
    assert 'name="opt_fedadam_lr" value="0.02"' in html and 'name="opt_beta2" value="0.95"' in html
    assert re.search(r'<option value="fedadam" selected>', html)


def test_the_form_says_which_setting_is_out_of_range(alice_client, tiny_artifacts):
    data = {**FORM, "server_optimizer": "fedavgm", "opt_fedavgm_lr": "1.0", "opt_momentum": "1.5",
            "model_files": model_uploads(tiny_artifacts)}
    response = alice_client.post("/tasks/new/", data)
    assert response.status_code == 200
    assert field_errors(response.content.decode(), "opt_momentum") == [
        "FedAvgM (server momentum) needs momentum, the server momentum (a number in [0, 1))."]
    assert not Task.objects.filter(pk="heart").exists()


def test_without_the_field_a_task_has_no_server_optimizer(alice_client, tiny_artifacts):
    response = alice_client.post("/tasks/new/", {**FORM, "model_files": model_uploads(tiny_artifacts)})
    assert response.status_code == 302
    task = Task.objects.get(pk="heart")
    assert (task.server_optimizer, task.server_optimizer_params) == ("none", {})


def test_the_api_stores_and_returns_the_server_optimizer(token_client, tiny_artifacts):
    task = json.loads(json.dumps(DISCO_TASK))
    task["trainingInformation"].update(serverOptimizer="fedavgm", serverOptimizerParams={"lr": 0.7, "momentum": 0.9})
    response = token_client.post("/api/tasks/", multipart(task, tiny_artifacts))
    assert response.status_code == 201, response.content
    shown = token_client.get("/api/tasks/heart/").json()["trainingInformation"]
    assert (shown["serverOptimizer"], shown["serverOptimizerParams"]) == ("fedavgm", {"lr": 0.7, "momentum": 0.9})
    stored = Task.objects.get(pk="heart")
    assert (stored.server_optimizer, stored.server_optimizer_params) == ("fedavgm", {"lr": 0.7, "momentum": 0.9})


@pytest.mark.parametrize(("training", "errors"), [
    ({"serverOptimizer": "fedadam", "serverOptimizerParams": {"lr": 0, "beta1": 0.9, "beta2": 1.0, "epsilon": 1e-3}},
     {"server_optimizer_params": ["FedAdam (adaptive server steps) needs lr, the server learning rate (a number in "
                                  "(0, 10]).",
                                  "FedAdam (adaptive server steps) needs beta2, the second-moment decay (a number in "
                                  "[0, 1))."]}),
    ({"serverOptimizer": "fedavgm", "serverOptimizerParams": {"lr": 1, "momentum": 0.9, "nesterov": True}},
     {"server_optimizer_params": ["fedavgm takes lr, momentum; unexpected: nesterov."]}),
    ({"serverOptimizer": "adagrad"}, {"server_optimizer": ["The server optimizer must be one of: none, fedavgm, "
                                                           "fedadam."]}),
    ({"scheme": "decentralized", "serverOptimizer": "fedavgm", "serverOptimizerParams": {"lr": 1, "momentum": 0.9}},
     {"server_optimizer": ["FedAvgM is a step the server takes after a federated round; decentralized tasks have no "
                           "server step. Choose the federated scheme, or no server optimizer."]}),
])
def test_the_api_refuses_invalid_settings_by_field(token_client, tiny_artifacts, training, errors):
    task = json.loads(json.dumps(DISCO_TASK))
    task["trainingInformation"].update(training)
    response = token_client.post("/api/tasks/", multipart(task, tiny_artifacts))
    assert response.status_code == 400
    assert {k: v for k, v in response.json().items() if k.startswith("server_optimizer")} == errors
    assert not Task.objects.filter(pk="heart").exists()


def test_the_admin_refuses_an_out_of_range_setting_and_stores_a_valid_one(admin_client, served):
    from tests.tasks.test_admin import _form_data

    url = "/admin/tasks/task/served/change/"
    response = admin_client.post(url, _form_data(served, server_optimizer="fedavgm",
                                                 server_optimizer_params='{"lr": 20, "momentum": 0.9}'))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["server_optimizer_params"] == [
        "FedAvgM (server momentum) needs lr, the server learning rate (a number in (0, 10])."]
    response = admin_client.post(url, _form_data(served, server_optimizer="fedavgm",
                                                 server_optimizer_params='{"lr": 2, "momentum": 0.5}'))
    assert response.status_code == 302
    served.refresh_from_db()
    assert (served.server_optimizer, served.server_optimizer_params) == ("fedavgm", {"lr": 2, "momentum": 0.5})


def test_the_api_lists_the_registry(client):
    from aggregation.aggregators.registry import registry_json

    response = client.get("/api/aggregators/")
    assert response.status_code == 200
    body = response.json()
    assert body == json.loads(json.dumps(registry_json()))
    fedavgm = next(o for o in body["serverOptimizers"] if o["name"] == "fedavgm")
    assert [(p["name"], p["default"], p["range"]) for p in fedavgm["params"]] == [
        ("lr", 1.0, "a number in (0, 10]"), ("momentum", 0.9, "a number in [0, 1)")]
    assert [a["name"] for a in body["aggregators"]] == ["mean", "plain_mean", "median", "trimmed_mean", "krum",
                                                       "multi_krum", "centered_clipping", "secure"]
