"""Curating tasks in Django admin: access, validation, publishing, versions and rollback."""

from __future__ import annotations

import pytest

from tasks.models import Task

pytestmark = [pytest.mark.django_db, pytest.mark.both_modes]

ADMIN_PAGES = ["/admin/", "/admin/tasks/task/", "/admin/tasks/task/served/change/", "/admin/tasks/task/add/",
               "/admin/tasks/modelversion/", "/admin/tasks/conversionjob/",
               "/admin/tasks/task/?scheme__exact=federated&data_type__exact=tabular&published__exact=1"]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_load_for_a_superuser(admin_client, served, url):
    response = admin_client.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_refuse_anonymous_users(client, served, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_admin_pages_refuse_non_staff_users(client, served, django_user_model):
    user = django_user_model.objects.create_user("contributor", password="pw-long-enough-1")
    client.force_login(user)
    assert client.get("/admin/tasks/task/").status_code == 302


def _form_data(task: Task, **changes) -> dict:
    data = {
        "title": task.title, "summary_preview": task.summary_preview, "data_type": task.data_type,
        "scheme": task.scheme, "epochs": task.epochs, "round_duration": task.round_duration,
        "batch_size": task.batch_size, "validation_split": task.validation_split,
        "min_participants": task.min_participants, "input_columns": '["a", "b", "c", "d"]',
        "output_columns": '["label"]', "labels": "[]", "preprocessing": "[]", "data_example": "[]",
        "aggregator": "mean", "aggregator_params": "{}", "server_optimizer": "none", "server_optimizer_params": "{}",
        "compression": "float32",
        "max_share_value": 100, "published": "on",
        "round_deadline_seconds": 120, "allow_relay": "on", "participation": "open",
        "max_samples_per_update": 100000, "max_contribution_share": 0.25,
        "versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 2, "versions-MIN_NUM_FORMS": 0,
        "versions-MAX_NUM_FORMS": 1000, "conversion_jobs-TOTAL_FORMS": 0, "conversion_jobs-INITIAL_FORMS": 0,
        "conversion_jobs-MIN_NUM_FORMS": 0, "conversion_jobs-MAX_NUM_FORMS": 1000,
    }
    data.update(changes)
    return data


def test_editing_applies_the_same_validation(admin_client, served):
    url = "/admin/tasks/task/served/change/"
    response = admin_client.post(url, _form_data(served, epochs=5, validation_split=1.5))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "multiple of the round duration" in str(errors["round_duration"])
    assert "strictly between 0 and 1" in str(errors["validation_split"])
    served.refresh_from_db()
    assert served.epochs == 4
    response = admin_client.post(url, _form_data(served, epochs=6, title="Renamed"))
    assert response.status_code == 302
    served.refresh_from_db()
    assert (served.epochs, served.title) == (6, "Renamed")


def test_columns_the_current_model_cannot_take_are_refused_in_admin(admin_client, served):
    response = admin_client.post("/admin/tasks/task/served/change/",
                                 _form_data(served, input_columns='["a", "b", "c", "d", "e"]'))
    assert response.status_code == 200
    errors = str(response.context["adminform"].form.non_field_errors())
    assert "Version 2 does not fit these settings: The model expects 4 input values per row" in errors, errors
    served.refresh_from_db()
    assert served.input_columns == ["a", "b", "c", "d"]


def test_publish_and_unpublish_actions(admin_client, served):
    admin_client.post("/admin/tasks/task/", {"action": "unpublish", "_selected_action": ["served"]})
    assert not Task.objects.get(pk="served").published
    admin_client.post("/admin/tasks/task/", {"action": "publish", "_selected_action": ["served"]})
    assert Task.objects.get(pk="served").published


def test_rollback_from_the_change_page(admin_client, client, served):
    page = admin_client.get("/admin/tasks/task/served/change/").content.decode()
    assert 'formaction="/admin/tasks/task/served/set-version/1/"' in page and "<strong>current</strong>" in page
    response = admin_client.post("/admin/tasks/task/served/set-version/1/")
    assert response.status_code == 302
    served.refresh_from_db()
    assert served.current_version.number == 1
    assert client.get("/tasks/served/model.json")["X-Disco-Model-Version"] == "1"
    assert admin_client.get("/admin/tasks/task/served/set-version/1/").status_code == 405
    assert client.post("/admin/tasks/task/served/set-version/2/").status_code == 302
    served.refresh_from_db()
    assert served.current_version.number == 1  # anonymous POST changed nothing


def test_versions_cannot_be_edited_or_deleted_in_admin(admin_client, served):
    version = served.versions.get(number=1)
    assert admin_client.get(f"/admin/tasks/modelversion/{version.pk}/delete/").status_code == 403
    page = admin_client.get(f"/admin/tasks/modelversion/{version.pk}/change/").content.decode()
    assert 'name="sha256"' not in page  # read-only
