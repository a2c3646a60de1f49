"""Model calls: the OpenAI-compatible client (retries, rate limits, the circuit, token and
cost accounting), context folding, and how scripted answers are marked.
"""
