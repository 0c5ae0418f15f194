"""One-off setup of the cluster (``modelscribe setup templates|pipelines|lifecycle|all``).

Nothing here runs on the shipping path: these are commands an operator runs
once per cluster (and again after an upgrade), each idempotent and
version-stamped. ``install`` orders the steps; ``cluster`` reads what the
cluster has; ``templates``, ``pipelines`` (with ``pipeline_defs``, the
loader of pipelines/*.yml) and ``lifecycle`` install one kind of object
each; ``privileges`` holds the shipping and setup roles; ``report`` the
per-object outcome and the one translation of HTTP errors.
"""
