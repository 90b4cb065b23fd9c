"""One hierarchy for the errors flowbot raises on purpose.

Every error class of the engine and the integrations derives from :class:`FlowbotError`, so a
caller can tell "flowbot refused" from "a bug or a library failed". :class:`UserError` marks the
ones whose message is written for the user (bad input, a file that cannot be sent, a service that is
down): wherever the engine reports a failure to a user, it shows a :class:`UserError`'s message as it
is and anything else as "an internal error (logged)".
"""

from __future__ import annotations

from engine.i18n import N_, _

__all__ = ['FlowbotError', 'UserError', 'user_message']

INTERNAL = N_('an internal error (logged)')
"""What the user is told about a failure whose message is not for them."""


class FlowbotError(Exception):
    """The base of every error flowbot raises on purpose (configuration, flows, store, plugins)."""


class UserError(FlowbotError):
    """A failure whose message is fit to show the user as it is (no paths, no tracebacks)."""


def user_message(error: BaseException) -> str:
    """What the user may read about ``error``: its own message if it is a :class:`UserError`, else
    :data:`INTERNAL` in the reply language (the details go to the log only)."""
    return str(error) if isinstance(error, UserError) else _(INTERNAL)
