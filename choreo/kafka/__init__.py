"""Kafka I/O for every service: tuned clients, broker resolution (environment, Docker, the
embedded broker, Apache Kafka from its jars), transactions, committed offsets, record limits,
topic creation, and the process runner.
"""
