"""Prefect flows and deployments for samsar."""
