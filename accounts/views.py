"""Sign-up (Django's ``UserCreationForm``, then the new contributor is logged in) and the log-in lockout page.

Both are limited per client address (``disco_site.throttling``): sign-ups to
``DISCO_SIGNUP_RATE``, wrong passwords for one username by django-axes.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from disco_site.throttling import Limit, client_address, describe_rate, describe_wait

HTTP_TOO_MANY_REQUESTS = 429


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing up: a safe ``next`` on this site, else ``LOGIN_REDIRECT_URL``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = UserCreationForm(request.POST or None)
    status = 200
    if request.method == "POST":
        limit = Limit("signup", settings.DISCO_SIGNUP_RATE)
        wait = limit.hit(client_address(request))
        if wait is not None:
            form.add_error(None, f"Too many sign-ups from your address (limit {describe_rate(limit.rate)}). No "
                                 f"account was created: try again in {describe_wait(wait)}, or log in if you "
                                 "already have an account.")
            status = HTTP_TOO_MANY_REQUESTS
    if request.method == "POST" and status == 200 and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return HttpResponseRedirect(_next_url(request))
    return render(request, "accounts/signup.html", {"form": form, "next": request.POST.get("next")
                                                   or request.GET.get("next", "")}, status=status)


def locked_out(request: HttpRequest, original_response: HttpResponse | None = None,
               credentials: dict | None = None) -> HttpResponse:
    """django-axes' answer once a username has had too many wrong passwords from this address."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    # An unbound form: checking it would call authenticate() again, and count one more failure.
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    form._errors, form.cleaned_data = ErrorDict(), {}
    form.add_error(None, f"Too many failed log-ins for this username from your address ({settings.AXES_FAILURE_LIMIT} "
                         f"in a row). Log-in is blocked for {minutes} minutes: wait, then try again with the right "
                         "password.")
    return render(request, "registration/login.html", {"form": form, "next": request.POST.get("next", "")},
                  status=HTTP_TOO_MANY_REQUESTS)
