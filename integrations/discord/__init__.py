"""The Discord adapter (a channel, not a plugin): :class:`~integrations.discord.bot.DiscordBot` runs
the gateway and turns messages, slash commands and button presses into engine events;
:class:`~integrations.discord.adapter.DiscordAdapter` implements :class:`engine.api.Adapter` on
Discord's REST API. :mod:`integrations.discord.voice` is the voice connection it uses.
"""

__all__: list[str] = []
