"""openstacksdk/keystoneauth errors become vmsniff errors with an exit code and a next step."""

from __future__ import annotations

import logging

import pytest
from keystoneauth1 import exceptions as ks
from openstack import exceptions as sdk

from vmsniff.errors import PermissionDenied, Unreachable, UsageError, VmsniffError
from vmsniff.exitcodes import ExitCode
from vmsniff.resolve.nova import NovaSource, _translate, cloud_configured

URL = "http://127.0.0.1:9/identity/v3"


@pytest.mark.parametrize(
    ("exc", "kind", "code", "hint_words"),
    [
        (ks.ConnectFailure(f"Unable to establish connection to {URL}"), Unreachable,
         ExitCode.UNREACHABLE, ["auth_url", "--offline"]),
        (ks.ConnectTimeout(f"timed out: {URL}"), Unreachable, ExitCode.UNREACHABLE, ["--offline"]),
        (ks.DiscoveryFailure(f"Could not find versioned identity endpoints: {URL}"), Unreachable,
         ExitCode.UNREACHABLE, ["auth_url"]),
        (ks.Unauthorized("The request you have made requires authentication."), PermissionDenied,
         ExitCode.PERMISSION, ["clouds.yaml", "--os-cloud"]),
        (sdk.ForbiddenException("Policy doesn't allow get_all_tenants"), PermissionDenied,
         ExitCode.PERMISSION, ["admin", "--host"]),
        (sdk.ConfigException("Cloud nope was not found."), UsageError, ExitCode.USAGE,
         ["--os-cloud", "--offline"]),
        (sdk.HttpException("500 Internal Server Error"), Unreachable, ExitCode.UNREACHABLE,
         ["--offline"]),
    ],
)  # fmt: skip
def test_translation_gives_kind_code_message_and_hint(
    exc: Exception, kind: type[VmsniffError], code: ExitCode, hint_words: list[str]
) -> None:
    err = _translate(exc, "lab")
    assert type(err) is kind and err.exit_code is code
    assert str(exc).split(":")[0] in err.message  # the library's words are kept
    assert err.hint is not None
    for word in hint_words:
        assert word in err.hint


def test_message_names_the_cloud_or_the_variables() -> None:
    assert "cloud 'lab'" in _translate(ks.ConnectFailure("x"), "lab").message
    assert "OS_CLOUD / OS_* variables" in _translate(ks.ConnectFailure("x"), None).message


def test_cloud_configured_by_flag_os_cloud_or_auth_url() -> None:
    assert cloud_configured("lab", {})
    assert cloud_configured(None, {"OS_CLOUD": "lab"})
    assert cloud_configured(None, {"OS_AUTH_URL": URL})
    assert not cloud_configured(None, {"OS_USERNAME": "admin"})


def test_connect_quiets_keystoneauth_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    # keystoneauth warns "Failed to discover available identity versions" on stderr before the
    # error we translate; the connection step raises its level so the operator sees one message.
    logger = logging.getLogger("keystoneauth")
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    import openstack

    def refuse(**kwargs: object) -> None:
        raise sdk.ConfigException("Cloud nope was not found.")

    monkeypatch.setattr(openstack, "connect", refuse)
    with pytest.raises(UsageError, match="Cloud nope was not found"):
        NovaSource("nope").find("c-private")
    assert logger.level == logging.ERROR
