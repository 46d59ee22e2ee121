"""The container tier (``make test-containers``): see conftest.py."""
