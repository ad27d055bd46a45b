"""Serving under load: arrival schedules, the drivers that keep them, SLO attainment,
goodput, the saturation guard and the capacity search (docs/load.md).

Light on purpose: the budget parser imports :mod:`pytest_inferbudget.load.presets` when a
marker names an SLO, so this package imports none of its modules itself.

- :mod:`~pytest_inferbudget.load.schedule`: seeded arrival times and prompt order (pure).
- :mod:`~pytest_inferbudget.load.slo`: per-request SLO checks, attainment with its
  binomial bounds, goodput, saturation (pure).
- :mod:`~pytest_inferbudget.load.http`: the asyncio client for the ``openai`` engine.
- :mod:`~pytest_inferbudget.load.inprocess`: requests added to the in-process vLLM engine.
- :mod:`~pytest_inferbudget.load.tester`: the ``load`` fixture's object and its results.
"""
