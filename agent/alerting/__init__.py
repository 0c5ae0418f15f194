"""Anomaly rules, defined once (rules.py) and generated for three engines.

watcher.py (Elasticsearch Watcher), kibana_rules.py (Kibana ES query
rules), elastalert.py (ElastAlert2 rule files); evaluate.py applies Watcher's
condition semantics in Python for the tests; install.py backs
``modelscribe setup watchers`` and ``setup rules`` (agent/cli_alerting.py
also has ``setup elastalert``). Look-backs follow the agents' health window
(``rules.for_windows``). See docs/alerting.md.
"""
