"""Slash commands built from flow triggers, and the hash that decides whether to sync."""

from __future__ import annotations

import attrs
import hikari

from engine.flows.model import OptionSpec, Trigger
from integrations.discord.commands import command_set_hash, command_specs, discord_locale, slash_builder


@attrs.frozen
class FakeFlow:
    name: str
    trigger: Trigger


def _flow(name: str = 'train', **trigger: object) -> FakeFlow:
    return FakeFlow(name, Trigger(command=name, **trigger))  # type: ignore[arg-type]


def test_required_options_come_first_with_types_and_choices() -> None:
    flow = _flow(
        options=[
            OptionSpec(name='epochs', type='integer', default=3, choices=[1, 3, 5]),
            OptionSpec(name='path', type='string', description={'en': 'Data folder', 'ko': '데이터 폴더'}),
            OptionSpec(name='rate', type='number', required=True),
            OptionSpec(name='user', type='user', required=False),
        ]
    )
    (spec,) = command_specs([flow])
    builder = slash_builder(spec)
    assert [(o.name, o.type, o.is_required) for o in builder.options] == [
        ('path', hikari.OptionType.STRING, True),
        ('rate', hikari.OptionType.FLOAT, True),
        ('epochs', hikari.OptionType.INTEGER, False),
        ('user', hikari.OptionType.USER, False),
    ]
    assert [c.value for c in builder.options[2].choices or []] == [1, 3, 5]
    assert builder.options[0].description == 'Data folder'
    assert builder.options[0].description_localizations == {
        hikari.Locale.EN_US: 'Data folder',
        hikari.Locale.KO: '데이터 폴더',
    }


def test_aliases_become_commands_and_invalid_or_taken_names_are_skipped() -> None:
    flows = [_flow('hi', aliases=['hello', 'Bad Name']), _flow('hello'), FakeFlow('chat', Trigger(message=True))]
    specs = command_specs(flows)
    assert [(s.name, s.command, s.flow) for s in specs] == [('hello', 'hi', 'hi'), ('hi', 'hi', 'hi')]


def test_flows_that_refuse_direct_messages_are_guild_only() -> None:
    (spec,) = command_specs([_flow('join', dm=False)])
    assert list(slash_builder(spec).context_types) == [hikari.ApplicationContextType.GUILD]


def test_hash_is_stable_and_changes_with_any_visible_detail() -> None:
    base = [_flow('a', description='one'), _flow('b')]
    same = command_set_hash(command_specs(base))
    assert same == command_set_hash(command_specs(list(reversed(base))))
    assert same != command_set_hash(command_specs([_flow('a', description='two'), _flow('b')]))
    assert same != command_set_hash(command_specs(base), guild_ids=[1])
    with_option = [_flow('a', description='one', options=[OptionSpec(name='x')]), _flow('b')]
    assert same != command_set_hash(command_specs(with_option))


def test_flow_languages_map_to_discord_locales() -> None:
    assert discord_locale('ru') is hikari.Locale.RU
    assert discord_locale('en') is hikari.Locale.EN_US
    assert discord_locale('pt-BR') is hikari.Locale.PT_BR
    assert discord_locale('xx') is None
