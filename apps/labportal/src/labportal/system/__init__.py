"""Operations: health and readiness, Prometheus metrics, structured request logs."""
