"""Widgets and text that observe a job's events and records; they never drive a job."""
