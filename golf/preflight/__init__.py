"""Preflight: parameters, artifact bytes, step time and warnings of a config before paying for a run.

`python -m golf.preflight <overrides>`; `golf.preflight.check.preflight(cfg)` from code (train.py runs it).
"""

from golf.preflight.check import PreflightReport, code_bytes_for, format_report, format_summary, preflight

__all__ = ["PreflightReport", "code_bytes_for", "format_report", "format_summary", "preflight"]
