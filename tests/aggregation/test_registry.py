"""The registry of aggregators and server optimizers, and what derives from it: the model's and the form's
choices, validation, the form's parameter fields, the page's JSON and the streaming mean."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from aggregation.aggregators import aggregate
from aggregation.aggregators.registry import AGGREGATORS, SERVER_OPTIMIZERS, Param, choices, field_names, registry_json
from tasks.choices import Aggregator, ServerOptimizer
from tasks.forms import TaskForm
from tasks.models import Task
from tasks.validation import validate_task_fields
from tests.tasks.test_validation import BASE as VALID


def test_every_aggregator_can_run_and_every_optimizer_but_none_can_step():
    for spec in AGGREGATORS.values():
        assert spec.rule is not None or spec.stream is not None, spec.name
        assert spec.label and spec.summary
    assert [o.name for o in SERVER_OPTIMIZERS.values() if o.step is None] == ["none"]


def test_the_model_and_the_form_offer_the_registry_in_its_order():
    # Prepare
    expected_aggregators = [(a.name, a.label) for a in AGGREGATORS.values()]
    expected_optimizers = [(o.name, o.label) for o in SERVER_OPTIMIZERS.values()]
    form = TaskForm()
    # Assert
    assert choices(AGGREGATORS) == Aggregator.choices == expected_aggregators
    assert choices(SERVER_OPTIMIZERS) == ServerOptimizer.choices == expected_optimizers
    assert Task._meta.get_field("aggregator").choices == expected_aggregators
    assert Task._meta.get_field("server_optimizer").choices == expected_optimizers
    assert list(form.fields["aggregator"].choices) == expected_aggregators
    assert list(form.fields["server_optimizer"].choices) == expected_optimizers
    assert Aggregator.MULTI_KRUM == "multi_krum" and ServerOptimizer.FEDAVGM == "fedavgm"


@pytest.mark.parametrize(("param", "text"), [
    (Param("beta", "float", 0.1, "", "", min=0, max=0.5, max_exclusive=True), "a number in [0, 0.5)"),
    (Param("f", "int", 1, "", "", min=0), "a whole number >= 0"),
    (Param("tau", "float", 1, "", "", min=0, min_exclusive=True), "a positive number"),
    (Param("lr", "float", 1, "", "", min=0, min_exclusive=True, max=10), "a number in (0, 10]"),
])
def test_ranges_are_said_in_words_and_enforced(param, text):
    assert param.range_text() == text
    assert param.accepts(param.default)
    assert not param.accepts(None) and not param.accepts(True) and not param.accepts(float("nan"))
    if param.max is not None:
        assert param.accepts(param.max) != param.max_exclusive
    if param.min is not None:
        assert param.accepts(param.min) != param.min_exclusive
    if param.type == "int":
        assert not param.accepts(1.5)


def test_parameters_shared_by_name_share_one_form_field_and_others_get_their_own():
    assert set(field_names(AGGREGATORS, "agg").values()) == {"agg_beta", "agg_f", "agg_m", "agg_tau",
                                                             "agg_iterations"}
    opt = field_names(SERVER_OPTIMIZERS, "opt")
    # FedAvgM's and FedAdam's learning rates have different defaults: two fields.
    assert opt["fedavgm", "lr"] == "opt_fedavgm_lr" and opt["fedadam", "lr"] == "opt_fedadam_lr"
    assert opt["fedavgm", "momentum"] == "opt_momentum" and opt["fedadam", "epsilon"] == "opt_epsilon"
    form = TaskForm()
    for name in [*field_names(AGGREGATORS, "agg").values(), *opt.values()]:
        assert name in form.fields
    assert form.fields["opt_fedavgm_lr"].initial == 1.0 and form.fields["opt_fedadam_lr"].initial == 0.01
    assert form.fields["agg_f"].initial == 1 and "Accepted: a whole number >= 0." in form.fields["agg_f"].help_text


@pytest.mark.parametrize("family", ["aggregator", "server_optimizer"])
def test_every_entry_with_its_defaults_is_valid_and_each_bound_is_refused_with_its_range(family):
    entries = AGGREGATORS if family == "aggregator" else SERVER_OPTIMIZERS
    for spec in entries.values():
        scheme = "decentralized" if "federated" not in getattr(spec, "schemes", ("federated",)) else "federated"
        values = {**VALID, family: spec.name, f"{family}_params": spec.defaults(), "scheme": scheme,
                  "min_participants": 7}
        assert validate_task_fields(values) == {}, spec.name
        for p in spec.params:
            for bad in (v for v in (p.min, p.max) if v is not None):
                out = bad - 1 if bad == p.min else bad + 1
                for value in {out, bad if (p.min_exclusive if bad == p.min else p.max_exclusive) else out}:
                    errors = validate_task_fields({**values, f"{family}_params": {**spec.defaults(), p.name: value}})
                    assert errors[f"{family}_params"] == [
                        f"{spec.label} needs {p.name}, {p.description} ({p.range_text()})."], (spec.name, p.name)


def test_unknown_and_missing_parameters_are_named():
    errors = validate_task_fields({**VALID, "server_optimizer": "fedavgm", "server_optimizer_params": {"lr": 1.0,
                                                                                                       "beta": 0.9}})
    assert errors["server_optimizer_params"] == [
        "fedavgm takes lr, momentum; unexpected: beta.",
        "FedAvgM (server momentum) needs momentum, the server momentum (a number in [0, 1)).",
    ]
    assert validate_task_fields({**VALID, "server_optimizer": "sgd"})["server_optimizer"] == [
        "The server optimizer must be one of: none, fedavgm, fedadam."]


def test_a_server_optimizer_needs_a_federated_task():
    errors = validate_task_fields({**VALID, "scheme": "decentralized", "server_optimizer": "fedadam",
                                   "server_optimizer_params": SERVER_OPTIMIZERS["fedadam"].defaults()})
    assert errors == {"server_optimizer": [
        "FedAdam is a step the server takes after a federated round; decentralized tasks have no server step. "
        "Choose the federated scheme, or no server optimizer."]}


def test_the_streamed_means_equal_the_matrix_rules():
    # Prepare
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(5, 300_001)).astype(np.float32)  # more than one scratch block
    weights = np.array([1, 2, 3, 4, 10], dtype=np.float64)
    shares = weights / weights.sum()
    # Execute / Assert
    mean_spec, plain_spec = AGGREGATORS["mean"], AGGREGATORS["plain_mean"]
    np.testing.assert_allclose(mean_spec.stream(iter(matrix), shares, matrix.shape[1]),
                               aggregate("mean", matrix, weights), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain_spec.stream(iter(matrix), np.full(5, 0.2), matrix.shape[1]),
                               aggregate("plain_mean", matrix), rtol=1e-5, atol=1e-6)
    assert mean_spec.weighted and not plain_spec.weighted and not AGGREGATORS["secure"].weighted


def test_the_registry_json_has_every_entry_and_the_form_adds_its_fields():
    data = registry_json()
    assert [a["name"] for a in data["aggregators"]] == list(AGGREGATORS)
    assert [o["name"] for o in data["serverOptimizers"]] == list(SERVER_OPTIMIZERS)
    assert data["aggregators"][3]["params"][0] == {
        "name": "beta", "type": "float", "default": 0.1, "label": "Share trimmed at each end (beta)",
        "help": "From 0 to just under 0.5; 0.1 drops the highest and lowest 10% of values.", "min": 0, "max": 0.5,
        "minExclusive": False, "maxExclusive": True, "range": "a number in [0, 0.5)"}
    with_fields = TaskForm().registry_json()
    fedavgm = next(o for o in with_fields["serverOptimizers"] if o["name"] == "fedavgm")
    assert [p["field"] for p in fedavgm["params"]] == ["opt_fedavgm_lr", "opt_momentum"]
    assert json.loads(json.dumps(with_fields)) == with_fields


@pytest.mark.django_db
def test_the_form_page_embeds_the_registry_for_its_script(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("carol", password="pw-carol-123"))
    html = client.get("/tasks/new/").content.decode()
    embedded = re.search(r'<script id="aggregation-registry" type="application/json">(.*?)</script>', html, re.S)
    assert json.loads(embedded.group(1)) == TaskForm().registry_json()
    assert 'data-param-field="agg_f"' in html and 'data-param-field="opt_fedadam_lr"' in html
    assert 'name="server_optimizer"' in html


def test_a_decentralized_task_is_refused_every_rule_its_peers_do_not_run_and_told_why():
    """Peers aggregate with the sample-weighted mean or secure aggregation (decentralized.js, peer.py); any other
    rule chosen for a decentralized task used to be replaced by the mean in silence."""
    peers_run = {"mean", "secure"}
    for spec in AGGREGATORS.values():
        values = {**VALID, "scheme": "decentralized", "aggregator": spec.name, "aggregator_params": spec.defaults(),
                  "min_participants": 7}
        errors = validate_task_fields(values)
        if spec.name in peers_run:
            assert "aggregator" not in errors, (spec.name, errors)
            continue
        [message] = errors["aggregator"]
        assert message.startswith(f"{spec.label} cannot run in a decentralized task"), message
        assert "Sample-weighted mean (FedAvg) or Secure aggregation (mean)" in message
        assert "Choose the federated scheme" in message
        assert validate_task_fields({**values, "scheme": "federated"}) == {}, spec.name
