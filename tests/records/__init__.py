"""Fidelity harness and per-record specs: golf presets checked against the records' own scripts."""
