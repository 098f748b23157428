"""The Dagster shell: assets, checks, sensors, schedules, jobs, resources. Wired in coin_assets.definitions."""
