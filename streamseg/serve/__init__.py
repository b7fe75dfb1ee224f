"""What the service serves besides its stream: Prometheus metrics and health, the read API."""
