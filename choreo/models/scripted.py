"""How a scripted (offline) model's answers are marked, on the wire and in spans.

The scripted model server (choreo.model_server) sets the header on every answer; the model
client reads it and labels the call's span and usage as scripted, so no scripted answer is ever
mistaken for a real model's.
"""

#: The header a scripted model server sets to ``true`` on every answer.
SCRIPTED_HEADER = "X-Choreo-Scripted"
#: ``gen_ai.provider.name`` of a call a scripted server answered.
SCRIPTED_PROVIDER = "choreo.scripted"
