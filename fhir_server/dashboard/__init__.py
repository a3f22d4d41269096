"""The committees' web dashboard: people sign in, see indicators by district on a map, trends over
time and a district's page. Pages read the analytics service's cached figures only."""
