"""Token estimates: what a chat will cost before the provider says.

About four characters a token, as for English text with the usual BPE tokenizers, plus three a
message for the chat framing. An estimate only decides what to reserve, when to fold context
and how to charge a tier's token bucket; the tokens the provider reports are what is accounted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MESSAGE_OVERHEAD_TOKENS = 3
CHARS_PER_TOKEN = 4


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """Estimated input tokens of a chat (see the module docstring for the rule)."""
    return sum(
        MESSAGE_OVERHEAD_TOKENS + math.ceil(len(m.get("content", "")) / CHARS_PER_TOKEN)
        for m in messages
    )
