"""Reliability: exact resume after SIGKILL, preemption signals, non-finite losses."""
