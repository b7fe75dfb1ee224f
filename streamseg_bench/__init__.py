"""Benchmarks, the simulator and quality measures, behind ``streamseg bench ...`` and
``streamseg simulate``.

Nothing on the service's path imports this package: the CLI imports it lazily, in the
commands that need it. Quality measures use scikit-learn, a test and benchmark
dependency only (``pip install -e ".[test]"``).
"""
