"""Everything around the engine, in two roles.

**Adapters** carry conversations between users and the engine: they implement the port
:class:`engine.api.Adapter` (send, ask, edit, progress) and turn what users do into
:class:`engine.api.Event` values for :meth:`engine.runtime.Engine.dispatch`.

- :mod:`integrations.console`: ``flowbot chat``, a terminal REPL over the real flows.
- :mod:`integrations.discord`: the Discord bot (hikari + lightbulb): prefix and slash commands,
  buttons, files, voice messages; :mod:`integrations.discord.voice` is its voice connection
  (a self-contained subpackage: gateway, UDP, encryption, DAVE, listening).

**Plugins** give flows their actions: each has ``setup(ctx)`` (see :mod:`engine.plugins`) that
reads its ``bot.toml`` table and registers allowlisted actions and services.

- :mod:`integrations.builtin`: feedback, corrections, help text, voice channel control.
- :mod:`integrations.models`: datasets, training (OpenAI or local scikit-learn), testing, chat.
- :mod:`integrations.speech`: speech recognition (vosk, faster-whisper) and synthesis (gTTS, espeak-ng).

Adapters may use plugins' services (the Discord adapter speaks through ``speech``); plugins never
import an adapter.
"""

__all__: list[str] = []
