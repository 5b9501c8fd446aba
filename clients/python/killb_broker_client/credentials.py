"""The caller's AWS setup going wrong (no credentials, an unknown profile, an SSO login missing or
expired, a failing credential_process, a config file that does not parse) as one client error.

botocore's own messages may quote what it read: a config line that would not parse, what a
credential_process printed. None of that is passed on, nor chained: the error says what is wrong,
for which profile, and the fix, in its own words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from botocore.session import Session as BotocoreSession

from killb_broker_client.errors import AwsCredentialsError

T = TypeVar("T")

NO_CREDENTIALS = (
    "no AWS credentials found to sign the broker call: set AWS_PROFILE to a configured profile, "
    "run `aws configure` or `aws sso login`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


# A TypeVar, not `def f[T]`: the client installs on Python 3.11.
def with_aws_trouble_as_client_error(  # noqa: UP047
    session: BotocoreSession, action: Callable[[], T]
) -> T:
    """action(), with any botocore error it raises turned into an AwsCredentialsError.

    The new error is raised outside the except block, so botocore's (and what it quotes) is not
    even its context.
    """
    try:
        return action()
    except (BotoCoreError, ClientError) as error:
        trouble = aws_credentials_error(error, profile_of(session))
    raise trouble


def profile_of(session: BotocoreSession) -> str | None:
    """The profile botocore reads (AWS_PROFILE), or None for the default chain."""
    try:
        profile = session.profile
    except BotoCoreError:
        return None
    return str(profile) if profile else None


def aws_credentials_error(error: Exception, profile: str | None) -> AwsCredentialsError:
    """What went wrong, for which profile, and how to mend it; nothing botocore quoted."""
    named = f'the AWS profile "{profile}"' if profile else "the default AWS profile"
    flag = f" --profile {profile}" if profile else ""
    match error:
        case ProfileNotFound():
            message = (
                f"{named} is not in the AWS config files: set AWS_PROFILE to a profile that "
                f"exists (`aws configure list-profiles`), or create it (`aws configure{flag}`)"
            )
        case ConfigParseError():
            message = (
                f"the AWS config file {error.kwargs.get('path', '')} cannot be parsed: mend its "
                "syntax ([default] or [profile NAME] sections of `key = value` lines), or point "
                "AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at a good one"
            )
        case UnauthorizedSSOTokenError():
            message = f"the AWS SSO login of {named} has expired: run `aws sso login{flag}`"
        case SSOTokenLoadError():
            message = (
                f"{named} signs in with AWS SSO and there is no SSO login for it yet: "
                f"run `aws sso login{flag}`"
            )
        case SSOError() | TokenRetrievalError():
            message = f"the AWS SSO login of {named} cannot be used: run `aws sso login{flag}`"
        case CredentialRetrievalError() if error.kwargs.get("provider") == "custom-process":
            message = (
                f"the credential_process of {named} failed: run that command by hand to see "
                "why (its output is not repeated here: it may hold secrets)"
            )
        case CredentialRetrievalError():
            message = (
                f"{named} could not supply AWS credentials ({error.kwargs.get('provider')}): "
                "check its settings with `aws sts get-caller-identity`"
            )
        case PartialCredentialsError():
            message = (
                f"the AWS credentials in {error.kwargs.get('provider')} are incomplete: "
                f"{error.kwargs.get('cred_var')} is missing"
            )
        case NoCredentialsError():
            message = NO_CREDENTIALS
        case ClientError():
            code = error.response.get("Error", {}).get("Code", "an error")
            message = (
                f"AWS refused the credentials of {named} ({code}): check the role it assumes "
                "with `aws sts get-caller-identity`"
            )
        case _:
            message = (
                f"the AWS credentials of {named} could not be loaded ({type(error).__name__}): "
                "check the AWS config with `aws sts get-caller-identity`"
            )
    return AwsCredentialsError(message, profile=profile)
