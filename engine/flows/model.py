"""The neutral flow model: what a ``flows/*.toml`` file means, independent of TOML and of transitions.

Loading (``loader``) produces it, validation (``validate``) checks it, compilation (``compile``)
turns it into a ``transitions`` machine, and adapters read triggers from it to build commands.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, Literal

import attrs

from engine.i18n import _

__all__ = [
    'END',
    'INTERRUPTS',
    'OPTION_TYPES',
    'STATE_KINDS',
    'Ask',
    'Branch',
    'Call',
    'ChoiceItem',
    'Decide',
    'End',
    'Flow',
    'FlowInfo',
    'MessageFilter',
    'OptionSpec',
    'Say',
    'State',
    'SubFlow',
    'Text',
    'Trigger',
    'Wait',
    'localize',
    'parse_duration',
]

Text = str | dict[str, str]
"""Plain text, or a table of translations keyed by language (``{ en = "…", ru = "…" }``)."""

OptionType = Literal['string', 'integer', 'number', 'boolean', 'attachment', 'user', 'channel']
OPTION_TYPES: tuple[str, ...] = ('string', 'integer', 'number', 'boolean', 'attachment', 'user', 'channel')
END = '__end__'
"""The final state every flow has; reaching it ends the conversation (or returns from a sub-flow)."""

INTERRUPTS: tuple[str, ...] = ('cancel', 'back', 'help')
"""Words every ``ask`` understands (typed as ``cancel`` or ``!cancel``, or pressed)."""


def localize(text: Text | None, locale: str | None, default: str = 'en') -> str:
    """Pick the translation for ``locale`` (``ru-RU`` matches ``ru``), else ``default``, else any."""
    if text is None:
        return ''
    if isinstance(text, str):
        return text
    for lang in (locale, (locale or '').split('-')[0], default, 'en'):
        if lang and lang in text:
            return text[lang]
    return next(iter(text.values()), '')


@attrs.frozen(kw_only=True)
class OptionSpec:
    """A typed command option; becomes a slash-command option and a prefix-command argument."""

    name: str
    type: OptionType = 'string'
    description: Text = ''
    required: bool | None = None
    """Defaults to ``True`` unless a ``default`` is given."""
    default: Any = None
    choices: list[str | int | float] = attrs.field(factory=list)
    name_localizations: dict[str, str] = attrs.field(factory=dict)

    @property
    def is_required(self) -> bool:
        """Whether the user must give it: ``required`` when set, else only when there is no ``default``."""
        return self.required if self.required is not None else self.default is None


@attrs.frozen(kw_only=True)
class MessageFilter:
    """Which free messages a ``message = true`` trigger takes; all given conditions must hold."""

    content_types: list[str] = attrs.field(factory=list)
    """Attachment content-type prefixes, e.g. ``["audio/"]``; one attachment must match."""
    has_attachment: bool | None = None
    pattern: str | None = None
    """A regular expression the text must contain."""


@attrs.frozen(kw_only=True)
class Trigger:
    """What starts the flow: a command, or free messages."""

    command: str | None = None
    aliases: list[str] = attrs.field(factory=list)
    description: Text = ''
    options: list[OptionSpec] = attrs.field(factory=list)
    message: bool = False
    filter: MessageFilter | None = None
    priority: int = 0
    """Among message flows whose filters match, the highest priority wins."""
    dm: bool = True
    """Whether the flow may run in direct messages."""


@attrs.frozen(kw_only=True)
class FlowInfo:
    """``[flow]``: the name commands and sub-flows use, and the version conversations finish on."""

    name: str
    description: Text = ''
    version: str = '1'


@attrs.frozen(kw_only=True)
class ChoiceItem:
    """A button of an ``ask`` with ``expect = "choice"``: the value saved, and the label shown (default: the value)."""

    value: str
    label: Text = ''


@attrs.frozen(kw_only=True)
class Branch:
    """``{ if = "expression", goto = "state" }`` of a ``choice`` state."""

    when: str
    goto: str


@attrs.frozen(kw_only=True)
class State:
    """Fields every state kind has."""

    kind: ClassVar[str] = ''
    next: str | None = None
    """The following state; defaults to the next table in the file."""
    timeout: str | float | None = None
    """Seconds, or ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    on_timeout: str | None = None
    """Where a timeout goes; without it a timeout ends the conversation with a message."""
    description: str = ''


@attrs.frozen(kw_only=True)
class Say(State):
    """``say``: send a text and/or files, then go on without waiting for the user."""

    kind: ClassVar[str] = 'say'
    text: Text | None = None
    files: list[str] = attrs.field(factory=list)
    """Templated paths of files to send."""
    voice: bool = False
    """Send ``files`` as a voice message."""


@attrs.frozen(kw_only=True)
class Ask(State):
    """``ask``: prompt, then wait for an answer, checked against ``expect`` and the limits, and save it."""

    kind: ClassVar[str] = 'ask'
    prompt: Text
    expect: Literal['text', 'number', 'integer', 'boolean', 'attachment', 'choice'] = 'text'
    choices: list[ChoiceItem] = attrs.field(factory=list)
    choices_from: str | None = None
    """An expression giving more choices at run time (a list of ``{value, label}`` tables or strings), such as
    ``"found.choices"`` saved by an action; shown as buttons after ``choices``."""
    attachments: bool = False
    """A file attached instead of typing is an answer too: saved as the attachment's table, and the actions
    that follow see it as the conversation's attachment."""
    pattern: str | None = None
    min: float | None = None
    """Smallest number, or shortest text."""
    max: float | None = None
    """Largest number, or longest text."""
    content_types: list[str] = attrs.field(factory=list)
    """Accepted attachment content-type prefixes."""
    attempts: int = 3
    invalid: Text | None = None
    """Said before re-prompting when an answer fails validation."""
    help: Text | None = None
    save_as: str | None = None
    on_fail: str | None = None
    """Where to go after ``attempts`` invalid answers; without it the conversation ends politely."""


@attrs.frozen(kw_only=True)
class Call(State):
    """``call``: run an allowlisted action in the background; its result (or error) moves the flow on."""

    kind: ClassVar[str] = 'call'
    action: str
    args: dict[str, Any] = attrs.field(factory=dict)
    """Argument values; strings are templates."""
    save_as: str | None = None
    on_error: str | None = None
    """Where to go when the action fails (``error`` holds the message); default: say it and end."""
    progress: Text | None = None
    """Shown (and then edited in place) while the action runs."""


@attrs.frozen(kw_only=True)
class Decide(State):
    """The ``choice`` kind: ordered conditions, first true wins, else ``else``."""

    kind: ClassVar[str] = 'choice'
    when: list[Branch] = attrs.field(factory=list)
    otherwise: str | None = None


@attrs.frozen(kw_only=True)
class Wait(State):
    """``wait``: rest until something notifies a topic (a training job ending), with a progress message."""

    kind: ClassVar[str] = 'wait'
    until: str
    """Templated topic, e.g. ``"job:{{ job.id }}"``; ``Engine.notify(topic)`` resumes the flow."""
    progress: Text | None = None
    save_as: str | None = None
    """Saves the notification's payload."""


@attrs.frozen(kw_only=True)
class SubFlow(State):
    """``flow``: run another flow as a step, with values passed in; its data can be saved when it ends."""

    kind: ClassVar[str] = 'flow'
    flow: str
    args: dict[str, Any] = attrs.field(factory=dict)
    """Templated values the sub-flow starts with (TOML key ``with``)."""
    save_as: str | None = None
    """Saves the sub-flow's data when it ends."""


@attrs.frozen(kw_only=True)
class End(State):
    """``end``: say a last text and/or send files, then end the conversation (or return from a sub-flow)."""

    kind: ClassVar[str] = 'end'
    text: Text | None = None
    files: list[str] = attrs.field(factory=list)


STATE_KINDS: dict[str, type[State]] = {cls.kind: cls for cls in (Say, Ask, Call, Decide, Wait, SubFlow, End)}


@attrs.frozen(kw_only=True)
class Flow:
    """One flow file."""

    flow: FlowInfo
    trigger: Trigger = attrs.field(factory=Trigger)
    permission: str | None = None
    states: dict[str, State] = attrs.field(factory=dict)
    source: str = ''
    """The TOML text it was loaded from (kept so running conversations can finish on it)."""
    path: str = ''
    _after: dict[str, str] = attrs.field(init=False, eq=False, repr=False)
    """Each state's successor in file order, so :meth:`following` is O(1) (lint walks every edge)."""

    def __attrs_post_init__(self) -> None:
        names = list(self.states)
        object.__setattr__(self, '_after', dict(itertools.pairwise(names)))

    @property
    def name(self) -> str:
        """The flow's name (``[flow] name``), unique among the flows a bot serves."""
        return self.flow.name

    @property
    def version(self) -> str:
        """``[flow] version`` as written; the library also keys versions by content (``version_id``)."""
        return self.flow.version

    @property
    def initial(self) -> str:
        """The state a conversation starts in: the first table in the file."""
        return next(iter(self.states))

    def following(self, state: str) -> str | None:
        """The state after ``state``: its ``next`` or the next table in the file."""
        spec = self.states[state]
        if spec.next is not None:
            return spec.next
        return self._after.get(state)


_DURATION = {'s': 1.0, 'm': 60.0, 'h': 3600.0, 'd': 86400.0}


def parse_duration(value: str | float | None) -> float | None:
    """``90``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"`` to seconds; ``ValueError`` on anything else."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value[-1:] in _DURATION and value[:-1].replace('.', '', 1).isdigit():
        seconds = float(value[:-1]) * _DURATION[value[-1]]
    else:
        raise ValueError(_('{value} is not a duration such as 30, "90s", "5m", "2h" or "1d"').format(value=repr(value)))
    if seconds <= 0:
        raise ValueError(_('{value}: a timeout must be positive').format(value=repr(value)))
    return seconds
