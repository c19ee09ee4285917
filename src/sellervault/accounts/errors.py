"""Account errors. Messages are fixed strings: they never carry an email, password or token."""

from sellervault.audit.events import Reason


class AccountError(Exception):
    code = Reason.ACCOUNT_ERROR
    status = 400


class InvalidCredentialsError(AccountError):
    """Wrong email, password or TOTP code, or a disabled account: deliberately indistinct."""

    code = Reason.INVALID_CREDENTIALS
    status = 401

    def __init__(self) -> None:
        super().__init__("invalid credentials")


class LoginThrottledError(AccountError):
    """Too many failed sign-ins from this address in a day (``accounts.login_failures``)."""

    code = Reason.LOGIN_THROTTLED
    status = 429
    retry_after = 3600

    def __init__(self) -> None:
        super().__init__("too many failed sign-ins from this address; try again later")


class PasswordChangeRequiredError(AccountError):
    code = Reason.PASSWORD_CHANGE_REQUIRED
    status = 403

    def __init__(self) -> None:
        super().__init__("the password must be changed before it can sign in")


class UnauthenticatedError(AccountError):
    code = Reason.UNAUTHENTICATED
    status = 401

    def __init__(self) -> None:
        super().__init__("a valid bearer token is required")


class PasswordPolicyError(AccountError):
    code = Reason.PASSWORD_POLICY
    status = 422


class PasswordReusedError(PasswordPolicyError):
    """The new password is the current one or one of the nine before it."""

    code = Reason.PASSWORD_REUSED

    def __init__(self) -> None:
        super().__init__("the password may not be one of this account's last 10")


class PasswordTooRecentError(AccountError):
    """The owner changes their password again less than a day after the last change."""

    code = Reason.PASSWORD_TOO_RECENT
    status = 409

    def __init__(self) -> None:
        super().__init__("the password was changed less than a day ago; try again later")


class AccountConflictError(AccountError):
    code = Reason.ACCOUNT_EXISTS
    status = 409


class AccountRequestError(AccountError):
    code = Reason.INVALID_ACCOUNT
    status = 422


class AlreadyInitializedError(AccountError):
    code = Reason.ALREADY_INITIALIZED
    status = 409

    def __init__(self) -> None:
        super().__init__("accounts already exist; init creates only the first administrator")


class AccountNotFoundError(AccountError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("no such account")


class NotPendingError(AccountError):
    """The account is not waiting for approval (approved, rejected, or never needed it)."""

    code = Reason.NOT_PENDING
    status = 409

    def __init__(self) -> None:
        super().__init__("this account is not waiting for approval")


class SecondPersonRequiredError(AccountError):
    """The approver created the account, or is a service: approval takes a second person."""

    code = Reason.SECOND_PERSON_REQUIRED
    status = 403

    def __init__(self) -> None:
        super().__init__("an account is approved or rejected by a person other than its "
                         "creator")


class SecurityOfficerRequiredError(AccountError):
    """The account was locked for touching a canary: a security officer, who has looked at
    why, re-enables it (an administrator may be the insider the canary caught)."""

    code = Reason.SECURITY_OFFICER_REQUIRED
    status = 403

    def __init__(self) -> None:
        super().__init__("an account a canary locked is re-enabled by a security officer")


class AccountStateError(AccountError):
    """The account is not in the status the change starts from (disabling a disabled one,
    enabling an active or pending one)."""

    code = Reason.ACCOUNT_STATE
    status = 409

    def __init__(self) -> None:
        super().__init__("the account is not in a state this change applies to")


class InvalidEnrolmentError(AccountError):
    """An enrolment token unknown, used, expired or malformed: one answer for all."""

    code = Reason.INVALID_ENROLMENT
    status = 401

    def __init__(self) -> None:
        super().__init__("this enrolment token is not valid (used, expired or unknown)")


class CodeMismatchError(AccountError):
    """At enrolment: the code is not a current one of the authenticator just set up."""

    code = Reason.INVALID_TOTP
    status = 422

    def __init__(self) -> None:
        super().__init__("the code does not match the authenticator: check its clock, retry")
class NotASessionError(AccountError):
    """Signing out with an API key: a key does not end itself (an admin disables its
    account)."""

    code = Reason.NOT_A_SESSION
    status = 403

    def __init__(self) -> None:
        super().__init__("only a session signs out; an API key is stopped by an administrator")


class LastAdministratorError(AccountError):
    """The change would leave the vault without an active administrator: nobody could
    manage accounts any more (recovering would need the data directory and a new init)."""

    code = Reason.LAST_ADMIN
    status = 409

    def __init__(self) -> None:
        super().__init__("this is the last active administrator: grant admin to another "
                         "person first")


class GrantStateError(AccountError):
    code = Reason.GRANT_STATE
    status = 409

    def __init__(self, message: str = "the account holds this grant already") -> None:
        super().__init__(message)


class ApiKeyStateError(AccountError):
    code = Reason.KEY_STATE
    status = 409

    def __init__(self) -> None:
        super().__init__("the API key is revoked or expired already")


class ApiKeyNotFoundError(AccountError):
    code = Reason.NOT_FOUND
    status = 404

    def __init__(self) -> None:
        super().__init__("the account has no API key with this id")


class PiiServiceKeyError(AccountError):
    """A new key for a service that reads PII: that takes a second person, as creating it
    did."""

    code = Reason.APPROVAL_REQUIRED
    status = 409

    def __init__(self) -> None:
        super().__init__("a service that reads PII gets a new key only as a new service a "
                         "security officer approves: create one, then offboard this one")
