"""The Dagster shell: assets, checks, sensors, schedules, jobs, resources. Wired in coin_assets.definitions."""

from coin_assets.defs.known_warnings import silence_known_warnings

silence_known_warnings()
