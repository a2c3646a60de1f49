"""What every service is built from: settings, the mesh spec, Kafka I/O, the model client."""
