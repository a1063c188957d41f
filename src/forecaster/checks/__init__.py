"""Evaluation, Model Monitor-style data/model quality checks, Clarify-style explanations, retrain decision, report.

Every check reads and writes the same files as SageMaker Model Monitor and Clarify (layouts in docs/checks.md),
so it runs locally, in a processing step, or next to the managed services.
"""
