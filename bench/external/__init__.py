"""External benchmark: the platform on the Fraud Detection Handbook's data (see README.md)."""
