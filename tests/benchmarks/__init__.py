"""Load benchmarks of idp under gunicorn (`python tests/benchmarks/run.py`); not pytest tests."""
