"""Latency and memory of a candidate: measured on the device (in-process or through the service), profiled per
operator, or predicted by a predictor built for the device."""
