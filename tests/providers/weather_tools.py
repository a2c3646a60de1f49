"""A function tool for the provider tests' meshes."""

from __future__ import annotations

import choreo


@choreo.tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21C in {city}"
