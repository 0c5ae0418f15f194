"""One-off setup of the Elasticsearch cluster (``modelscribe setup ...``).

Nothing here runs on the shipping path: these are commands an operator runs
once per cluster (and again after an upgrade), each idempotent. See
``templates`` for the index and component templates.
"""
